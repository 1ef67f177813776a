"""Signed playback tokens: `<key id>.<expiry, unix seconds>.<HMAC-SHA256, base64url>`.

The token signs the playback id and its expiry with one of the keys in
`DELIVERY_SIGNING_KEYS` (`kid:secret,kid:secret`; the first signs, every one listed verifies),
so a key is rotated by putting a new one first and keeping the old one listed until the longest
link signed with it has expired. Without the setting one key is derived from the secret key.
The token is a path segment of the playback URL, so a player resolves the package's relative
URIs (variant playlists, the MPD's BaseURL) under it with no rewriting and no cookie.
"""

import base64
import hashlib
import hmac
import re
import time
from dataclasses import dataclass

from django.conf import settings

_KID = re.compile(r"^[a-z0-9]{1,16}$")
_TOKEN = re.compile(r"^([a-z0-9]{1,16})\.([0-9]{1,12})\.([A-Za-z0-9_-]{43})$")
MAX_SECONDS = 7 * 24 * 3600


class TokenInvalid(ValueError):
    """Why a token is refused, in words for whoever holds it."""


@dataclass(frozen=True)
class SigningKey:
    kid: str
    secret: bytes


def keys() -> list[SigningKey]:
    configured = [item.strip() for item in settings.DELIVERY_SIGNING_KEYS if item.strip()]
    if not configured:
        derived = hmac.new(settings.SECRET_KEY.encode(), b"reelflow-playback-signing", hashlib.sha256).digest()
        return [SigningKey(kid="k0", secret=derived)]
    found = []
    for item in configured:
        kid, _, secret = item.partition(":")
        if not _KID.match(kid) or len(secret) < 32:
            raise ValueError("DELIVERY_SIGNING_KEYS: each key is kid:secret (kid a-z0-9, secret 32+ characters)")
        found.append(SigningKey(kid=kid, secret=secret.encode()))
    return found


def _mac(key: SigningKey, playback_id: str, expires: int) -> str:
    digest = hmac.new(key.secret, f"{playback_id}:{expires}:{key.kid}".encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def token_sign(*, playback_id: str, expires: int) -> str:
    key = keys()[0]
    return f"{key.kid}.{expires}.{_mac(key, playback_id, expires)}"


def token_for(*, playback_id: str, seconds: int, now: float | None = None) -> tuple[str, int]:
    """A token valid for `seconds` (at most 7 days) and its expiry."""
    expires = int((time.time() if now is None else now) + max(1, min(seconds, MAX_SECONDS)))
    return token_sign(playback_id=playback_id, expires=expires), expires


def token_verify(*, playback_id: str, token: str, now: float | None = None) -> int:
    """The token's expiry if it signs `playback_id` and has not expired; else TokenInvalid."""
    match = _TOKEN.match(token or "")
    if match is None:
        raise TokenInvalid("the playback token is malformed: ask for a new playback URL")
    kid, expires_text, mac = match.groups()
    expires = int(expires_text)
    key = next((k for k in keys() if k.kid == kid), None)
    if key is None:
        raise TokenInvalid("the playback token was signed with a key that is no longer valid: ask for a new URL")
    if not hmac.compare_digest(mac, _mac(key, playback_id, expires)):
        raise TokenInvalid("the playback token's signature does not match: the URL was altered")
    if expires <= (time.time() if now is None else now):
        raise TokenInvalid("the playback token has expired: ask for a new playback URL")
    return expires
