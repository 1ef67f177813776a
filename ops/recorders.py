"""Metrics read off recorded events: the apps record events anyway, so they carry no metrics code.

Called by core's event log inside the transaction that records the event; every observation
is pushed to Redis only once that transaction commits (a rolled-back unit finish counts nothing).
"""

from django.db import transaction

from core import metrics
from core.models import Event

_HANDLED = {"unit.done", "unit.failed", "rendition.playable", "job.published"}


def event_metrics_record(event: Event) -> None:
    if event.type not in _HANDLED:
        return
    if event.type in ("unit.done", "unit.failed"):
        unit_id = int(event.subject_id)
        ok = event.type == "unit.done"
        transaction.on_commit(lambda: _unit_ended(unit_id, ok=ok))
    elif event.type == "rendition.playable":
        job_id = int(event.subject_id)
        # Only the job's first playable rendition counts: the asset became watchable then.
        first = not Event.objects.filter(
            type="rendition.playable",
            subject_type=event.subject_type,
            subject_id=event.subject_id,
            id__lt=event.pk,
        ).exists()
        if first:
            transaction.on_commit(
                lambda: _since_asset(job_id, "reelflow_time_to_playable_seconds", event.created_at)
            )
    else:
        job_id = int(event.subject_id)
        transaction.on_commit(
            lambda: _since_asset(job_id, "reelflow_time_to_published_seconds", event.created_at)
        )


def _unit_ended(unit_id: int, *, ok: bool) -> None:
    from pipeline.models import Unit

    row = (
        Unit.objects.filter(pk=unit_id)
        .values(
            "wall_s",
            "cpu_s",
            "ffmpeg_s",
            "frames",
            "rendition__params",
            "rendition__kind",
            "rendition__height",
        )
        .first()
    )
    if row is None:
        return
    params = row["rendition__params"] or {}
    labels = {
        "codec": params.get("codec") or row["rendition__kind"] or "?",
        "height": str(row["rendition__height"] or params.get("height") or "audio"),
    }
    metrics.inc("reelflow_units_finished", **labels, outcome="done" if ok else "failed")
    if not ok:
        return
    if row["wall_s"] is not None:
        metrics.observe("reelflow_unit_duration_seconds", row["wall_s"], **labels)
    if row["cpu_s"] is not None:
        metrics.observe("reelflow_unit_cpu_seconds", row["cpu_s"], **labels)
    if row["frames"] and row["ffmpeg_s"]:
        metrics.observe("reelflow_encode_speed_fps", row["frames"] / row["ffmpeg_s"], **labels)


def _since_asset(job_id: int, name: str, at) -> None:
    from pipeline.models import EncodeJob

    created = EncodeJob.objects.filter(pk=job_id).values_list("asset__created_at", flat=True).first()
    if created is not None:
        metrics.observe(name, max(0.0, (at - created).total_seconds()))
