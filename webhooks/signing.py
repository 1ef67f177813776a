"""How deliveries are signed: HMAC-SHA256 of "<unix seconds>.<raw body>" with the endpoint's
secret, sent as `Reelflow-Signature: v1=<hex>` (webhooks/verify.py checks it)."""

import base64
import hashlib
import hmac
import secrets

from standardwebhooks.webhooks import Webhook

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret


def secret_new(scheme: str = "reelflow") -> str:
    """256 random bits; for Standard Webhooks endpoints in standard base64, as its libraries read it."""
    if scheme == "standard":
        return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def standard_signature_header(*, secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The Standard Webhooks `webhook-signature` value: one `v1,<base64>` per secret, space-separated."""
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(timestamp, tz=UTC)
    return " ".join(Webhook(s).sign(msg_id=msg_id, timestamp=moment, data=body.decode()) for s in secrets_)


def signature(*, secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def signature_header(*, secrets_: list[str], timestamp: int, body: bytes) -> str:
    """One v1 value per secret: the current one first, then a rotated one still overlapping."""
    return ",".join(f"v1={signature(secret=s, timestamp=timestamp, body=body)}" for s in secrets_)
