"""What webhook deliveries say about an asset: its state and playback URLs at the event's time
(webhooks.payloads calls this when it writes a delivery's body)."""

from django.conf import settings

from delivery import signing
from delivery.services import playback_urls
from pipeline import selectors as pipeline_selectors
from pipeline.models import Asset


def _asset_id(subject_type: str, subject_id: str, payload: dict) -> int | None:
    if subject_type == "pipeline.asset":
        value = subject_id
    elif isinstance(payload, dict):
        value = payload.get("asset")
    else:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def asset_block(*, subject_type: str, subject_id: str, payload: dict) -> dict | None:
    """{"id", "state", "title", "playback": {...}} for an event about an asset, else None. Signed
    URLs in it live DELIVERY_WEBHOOK_URL_SECONDS (a week by default): ask the API for fresh ones."""
    asset_id = _asset_id(subject_type, subject_id, payload)
    if asset_id is None:
        return None
    asset = Asset.objects.filter(pk=asset_id).first()
    if asset is None:
        return {"id": asset_id, "state": "deleted", "title": None, "playback": None}
    job = pipeline_selectors.job_published_latest(asset=asset)
    seconds = min(settings.DELIVERY_WEBHOOK_URL_SECONDS, signing.MAX_SECONDS)
    return {"id": asset.pk, "state": asset.state, "title": asset.title,
            "playback": playback_urls(asset=asset, job=job, seconds=seconds)}  # fmt: skip
