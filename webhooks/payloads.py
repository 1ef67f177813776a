"""What a delivery sends: the JSON body (stable across retries) and the headers of one attempt."""

import json
import time

from django.core.serializers.json import DjangoJSONEncoder

from core.models import Event
from webhooks import signing

USER_AGENT = "Reelflow-Webhooks/1"

# Public names of the subjects receivers see, instead of internal model labels.
SUBJECT_NAMES = {
    "pipeline.encodejob": "job",
    "pipeline.asset": "asset",
    "pipeline.rendition": "rendition",
    "studio.uploadsession": "upload",
    "webhooks.endpoint": "webhook_endpoint",
}


def body_for(event: Event) -> bytes:
    """The delivery's JSON; events about an asset carry an `asset` block with its state and
    playback URLs (delivery.webhooks)."""
    from delivery.webhooks import asset_block

    document = {
        "id": event.pk,
        "type": event.type,
        "created_at": event.created_at.isoformat(),
        "subject": {
            "type": SUBJECT_NAMES.get(event.subject_type, event.subject_type),
            "id": event.subject_id,
        },
        "data": event.payload,
    }
    block = asset_block(subject_type=event.subject_type, subject_id=event.subject_id, payload=event.payload)
    if block is not None:
        document["asset"] = block
    return json.dumps(document, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True).encode()


def headers_for(
    *, event_type: str, delivery_key: str, body: bytes, secrets_: list[str], timestamp: int | None = None,
    scheme: str = "reelflow",
) -> dict:
    timestamp = int(time.time()) if timestamp is None else timestamp
    if scheme == "standard":
        # Standard Webhooks: webhook-id is the idempotency key, the same on every attempt.
        return {
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            "Reelflow-Event-Type": event_type,
            "webhook-id": delivery_key,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signing.standard_signature_header(
                secrets_=secrets_, msg_id=delivery_key, timestamp=timestamp, body=body
            ),
        }
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Reelflow-Event-Type": event_type,
        "Reelflow-Delivery": delivery_key,
        "Reelflow-Timestamp": str(timestamp),
        "Reelflow-Signature": signing.signature_header(secrets_=secrets_, timestamp=timestamp, body=body),
    }
