"""API tokens: create (the token is shown once), revoke, authenticate, and the per-token rate
limit (a fixed window per minute in Redis, shared by every web process)."""

import hashlib
import hmac
import re
import secrets
import time
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from api.models import ApiToken, TokenScope
from core.services import event_record

TOKEN_PREFIX = "rf_"  # noqa: S105 - the marker every token starts with, not a secret
_TOKEN = re.compile(r"^rf_([A-Za-z0-9]{8})_([A-Za-z0-9_-]{43})$")
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
# last_used_at is written at most this often per token (a busy script would write every request).
_LAST_USED_EVERY = timedelta(seconds=60)


class TokenRefused(ValueError):
    pass


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_create(*, publisher, name: str, scope: str, actor=None) -> tuple[ApiToken, str]:
    """A new token for `publisher`; returns the row and the token itself (never stored)."""
    if not publisher.has_perm("core.access_studio"):
        raise TokenRefused(f"{publisher.get_username()} is not a publisher: only publishers have API tokens")
    if scope not in TokenScope.values:
        raise TokenRefused(f"scope must be one of {', '.join(TokenScope.values)}")
    name = (name or "").strip()[:100]
    if not name:
        raise TokenRefused("give the token a name (what uses it, e.g. 'CMS sync')")
    if ApiToken.objects.filter(publisher=publisher, revoked_at__isnull=True).count() >= settings.API_MAX_TOKENS:
        raise TokenRefused(f"at most {settings.API_MAX_TOKENS} active tokens per publisher: revoke one first")
    with transaction.atomic():
        while True:
            prefix = "".join(secrets.choice(_ALPHABET) for _ in range(8))
            if not ApiToken.objects.filter(prefix=prefix).exists():
                break
        token = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        row = ApiToken.objects.create(publisher=publisher, name=name, prefix=prefix, hashed=_hash(token), scope=scope)
        event_record(type="api.token_created", subject=row, actor=actor or publisher, owner=publisher,
                     payload={"name": name, "prefix": prefix, "scope": scope})  # fmt: skip
    return row, token


def token_revoke(*, token: ApiToken, actor) -> ApiToken:
    if token.revoked_at is not None:
        return token
    token.revoked_at = timezone.now()
    with transaction.atomic():
        token.save(update_fields=["revoked_at"])
        event_record(type="api.token_revoked", subject=token, actor=actor, owner=token.publisher,
                     payload={"name": token.name, "prefix": token.prefix})  # fmt: skip
    return token


def token_authenticate(raw: str) -> ApiToken | None:
    """The active token `raw` is, with its publisher; None for anything else (malformed,
    unknown, revoked, or a publisher who lost the role or was deactivated)."""
    match = _TOKEN.match(raw or "")
    if match is None:
        return None
    row = ApiToken.objects.select_related("publisher").filter(prefix=match.group(1)).first()
    if row is None or not hmac.compare_digest(row.hashed, _hash(raw)) or row.revoked_at is not None:
        return None
    if not row.publisher.is_active or not row.publisher.has_perm("core.access_studio"):
        return None
    now = timezone.now()
    if row.last_used_at is None or now - row.last_used_at > _LAST_USED_EVERY:
        ApiToken.objects.filter(pk=row.pk).update(last_used_at=now)
        row.last_used_at = now
    return row


@dataclass(frozen=True)
class RateState:
    allowed: bool
    limit: int
    remaining: int
    reset_in: int


def rate_take(token: ApiToken, *, now: float | None = None) -> RateState:
    """Count one request of `token` in the current minute's window."""
    limit = settings.API_RATE_PER_MINUTE
    now = time.time() if now is None else now
    window = int(now // 60)
    key = f"api:rate:{token.pk}:{window}"
    cache.add(key, 0, timeout=120)
    try:
        used = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=120)
        used = 1
    return RateState(allowed=used <= limit, limit=limit, remaining=max(0, limit - used), reset_in=60 - int(now % 60))
