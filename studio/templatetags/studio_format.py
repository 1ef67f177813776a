"""Formatting for the studio's pages: durations, and one line per event of the timeline."""

from django import template

register = template.Library()

EVENT_LABELS = {
    "upload.completed": "Upload finished",
    "asset.created": "Asset created",
    "job.created": "Encode job created",
    "job.probing": "Probing the source",
    "job.planned": "Planned chunks and renditions",
    "rendition.ready": "Rendition ready",
    "job.packaging": "Packaging HLS and DASH",
    "job.published": "Published",
    "job.held_for_review": "Held for review",
    "job.failed": "Failed",
    "job.cancelled": "Cancelled",
}


@register.filter
def duration(seconds) -> str:
    """62.4 -> "1:02", 3725 -> "1:02:05"; "" when unknown."""
    if seconds is None or seconds == "":
        return ""
    total = round(float(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


@register.filter
def event_label(event) -> str:
    return EVENT_LABELS.get(event.type, event.type.replace(".", " ").replace("_", " ").capitalize())


@register.filter
def event_detail(event) -> str:
    """The one or two payload facts worth a line in the timeline."""
    payload = event.payload or {}
    if event.type == "job.planned":
        return f"{payload.get('chunks')} chunks × {payload.get('renditions')} renditions = {payload.get('units')} units"
    if event.type == "rendition.ready":
        parts = [payload.get("rendition", "")]
        if payload.get("bitrate_kbps"):
            parts.append(f"{payload['bitrate_kbps']} kb/s")
        return ", ".join(p for p in parts if p)
    if event.type == "upload.completed":
        parts = payload.get("parts")
        return f"{parts} part{'' if parts == 1 else 's'} in {payload.get('seconds')} s"
    if event.type == "job.created":
        return f"profile {payload.get('profile', '')}"
    return str(payload.get("reason", ""))


@register.filter
def css_token(value) -> str:
    """ "job.failed" -> "job-failed": usable in a class name without escaping."""
    return "".join(ch if ch.isalnum() else "-" for ch in str(value)).lower()
