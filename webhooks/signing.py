"""How deliveries are signed: HMAC-SHA256 of "<unix seconds>.<raw body>" with the endpoint's
secret, sent as `Reelflow-Signature: v1=<hex>` (webhooks/verify.py checks it)."""

import hashlib
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


def secret_new() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(*, secrets_: list[str], timestamp: int, body: bytes) -> str:
    """One v1 value per secret: the current one first, then a rotated one still overlapping."""
    return ",".join(f"v1={signature(secret=s, timestamp=timestamp, body=body)}" for s in secrets_)
