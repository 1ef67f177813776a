"""Verify a Reelflow webhook (copy this file into your receiver; it needs only the standard library).

from verify import verify_webhook, InvalidWebhook

try:
    verify_webhook(
        secret=SECRET,  # the endpoint's signing secret, "whsec_..."
        body=request_body_bytes,  # the raw bytes, before any JSON parsing
        timestamp=headers["Reelflow-Timestamp"],
        signature=headers["Reelflow-Signature"],
    )
except InvalidWebhook:
    ...  # answer 400 and ignore the request
"""

import hashlib
import hmac
import time

TOLERANCE_SECONDS = 5 * 60


class InvalidWebhook(Exception):
    pass


def verify_webhook(
    *, secret: str, body: bytes, timestamp: str, signature: str, now: float | None = None
) -> None:
    """Raise InvalidWebhook unless `signature` is a valid v1 signature of `body` sent at
    `timestamp` (unix seconds) no more than five minutes from now."""
    try:
        sent_at = int(timestamp)
    except (TypeError, ValueError):
        raise InvalidWebhook("Reelflow-Timestamp is missing or not a number") from None
    if abs((time.time() if now is None else now) - sent_at) > TOLERANCE_SECONDS:
        raise InvalidWebhook("Reelflow-Timestamp is more than five minutes away: a replay?")
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    # Several v1 values while a rotated secret overlaps the new one: any may match.
    for item in (signature or "").split(","):
        scheme, _, value = item.strip().partition("=")
        if scheme == "v1" and hmac.compare_digest(value, expected):
            return
    raise InvalidWebhook("no v1 signature matches")
