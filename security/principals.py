"""Principals as CloudTrail names them, and the launch allowlist matched by ARN parts.

An ARN is `arn:partition:service:region:account:resource`; an IAM resource is `role/NAME` or
`role/PATH/NAME`. A glob over the whole string lets `role/reelflow-*` match the role
`role/reelflow-team/attacker` (an IAM path the attacker chose), so each part is matched on its
own and a `*` never crosses a `:` or a `/`: `role/reelflow-*` matches roles named `reelflow-...`
at the root path only; a path must be written out (`role/ops/reelflow-*`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase


@dataclass(frozen=True)
class Arn:
    partition: str
    service: str
    region: str
    account: str
    resource: str

    @property
    def segments(self) -> list[str]:
        return self.resource.split("/")


def arn_parse(text: str) -> Arn | None:
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or not parts[5]:
        return None
    return Arn(*parts[1:])


def arn_matches(*, pattern: str, candidate: str) -> bool:
    """Whether `candidate` matches `pattern` part by part (globs inside a part only). A pattern
    that is not an ARN matches only itself."""
    wanted, found = arn_parse(pattern), arn_parse(candidate)
    if wanted is None or found is None:
        return pattern == candidate
    fields = ("partition", "service", "region", "account")
    if not all(fnmatchcase(getattr(found, f), getattr(wanted, f)) for f in fields):
        return False
    want_segments, found_segments = wanted.segments, found.segments
    return len(want_segments) == len(found_segments) and all(
        fnmatchcase(seg, glob) for seg, glob in zip(found_segments, want_segments, strict=True)
    )


@dataclass(frozen=True)
class Principal:
    """Who made an API call, from CloudTrail's `userIdentity`."""

    arn: str  # the caller: an IAM user/role ARN, or an STS assumed-role/federated-user ARN
    issuer: str = ""  # for sessions: the role or user that issued it (sessionContext.sessionIssuer)
    kind: str = ""  # userIdentity.type: IAMUser, AssumedRole, Root, FederatedUser, AWSService...
    account: str = ""

    @property
    def label(self) -> str:
        return self.arn or self.kind or "unknown"


def _text(value) -> str:
    return value if isinstance(value, str) else ""


def principal_from_identity(identity) -> Principal:
    identity = identity if isinstance(identity, dict) else {}
    context = identity.get("sessionContext")
    issuer = (context or {}).get("sessionIssuer") if isinstance(context, dict) else None
    issuer_arn = _text(issuer.get("arn")) if isinstance(issuer, dict) else ""
    arn = _text(identity.get("arn")) or _text(identity.get("invokedBy")) or _text(identity.get("principalId"))
    parsed = arn_parse(arn)
    account = _text(identity.get("accountId")) or (parsed.account if parsed else "")
    return Principal(arn=arn, issuer=issuer_arn, kind=_text(identity.get("type")), account=account)


def principal_inconsistency(principal: Principal) -> str:
    """Why a principal cannot be what CloudTrail would have written, or "". A session's issuer
    counts for the allowlist only when the session really is one of that issuer's: an
    assumed-role ARN names its role, and a forged record could pair any caller with an allowed
    issuer."""
    if not principal.issuer:
        return ""
    session, issuer = arn_parse(principal.arn), arn_parse(principal.issuer)
    if session is None or issuer is None:
        return f"the session {principal.arn!r} or its issuer {principal.issuer!r} is not an ARN"
    if session.account != issuer.account:
        return f"the session's account {session.account} is not its issuer's {issuer.account}"
    kind = session.segments[0]
    if kind == "assumed-role":
        role = session.segments[1] if len(session.segments) == 3 else ""
        if issuer.segments[0] != "role" or issuer.segments[-1] != role:
            return f"the session {principal.arn} is not a session of the role {principal.issuer}"
    elif kind == "federated-user":
        if issuer.segments[0] != "user":
            return f"the federated session {principal.arn} names an issuer that is not a user"
    else:
        return f"{principal.arn} is not a session, yet the record names an issuer"
    return ""


def principal_allowed(*, principal: Principal, patterns: list[str]) -> bool:
    """The caller, or a consistent session's issuer, matches one of the allowlist's ARNs."""
    candidates = [principal.arn] if principal.arn else []
    if principal.issuer and not principal_inconsistency(principal):
        candidates.append(principal.issuer)
    return any(arn_matches(pattern=p, candidate=c) for p in patterns for c in candidates)
