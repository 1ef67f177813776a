"""Policies as data: Cloud Custodian syntax in, compiled matchers out.

`policy_set_current()` is what evaluations use: the files under SECURITY_POLICY_PATHS, compiled
once and reloaded when a file changes, with {fleet_version} taken from where it runs.
"""

import threading
from pathlib import Path

from django.conf import settings

from security.policy.engine import Policy, PolicySet, Trigger
from security.policy.loader import PolicyError, PolicyValidationError, policies_parse, policy_files

__all__ = [
    "Policy", "PolicyError", "PolicySet", "PolicyValidationError", "Trigger",
    "policy_context", "policy_set_current", "policy_set_load",
]  # fmt: skip

_lock = threading.Lock()
_cache: dict = {}


def policy_context() -> dict[str, str]:
    from security.fleet import fleet_version

    return {"fleet_version": fleet_version()}


def policy_set_load(paths: list[str] | None = None, *, context: dict[str, str] | None = None) -> PolicySet:
    """Parse, validate and compile every policy file; raise PolicyValidationError listing all errors."""
    context = policy_context() if context is None else context
    specs, errors = [], []
    for path in policy_files(list(paths if paths is not None else settings.SECURITY_POLICY_PATHS)):
        try:
            specs += policies_parse(path.read_text(), source=str(path), context=context)
        except PolicyValidationError as exc:
            errors += exc.errors
    names = [s.name for s in specs]
    for spec in specs:
        if names.count(spec.name) > 1:
            errors.append(
                PolicyError(
                    spec.line, f"policy name {spec.name!r} is used in more than one file", spec.source
                )
            )
    if errors:
        raise PolicyValidationError(errors)
    return PolicySet(specs)


def policy_set_current() -> PolicySet:
    paths = list(settings.SECURITY_POLICY_PATHS)
    files = policy_files(paths)
    context = policy_context()
    key = (tuple(paths), tuple((str(f), f.stat().st_mtime_ns) for f in files), tuple(sorted(context.items())))
    with _lock:
        if _cache.get("key") != key:
            _cache["set"] = policy_set_load(paths, context=context)
            _cache["key"] = key
        return _cache["set"]


def shipped_pack_path() -> Path:
    return Path(__file__).resolve().parent.parent / "policies" / "reelflow.yml"
