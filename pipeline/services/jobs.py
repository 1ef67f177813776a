"""A job's life outside its steps: created for an upload, started by its probe, failed or
cancelled. Each runs in a transaction, locks the job, records an event and tells open pages.
"""

import urllib.parse
from pathlib import PurePosixPath

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.services import event_record
from pipeline import progress, queues
from pipeline.models import (
    Asset,
    AssetState,
    EncodeJob,
    JobState,
    Profile,
    Rendition,
    RenditionState,
    Unit,
    UnitState,
)
from pipeline.services.common import asset_state_set, job_event, job_state_message


def _title_from(metadata: dict, key: str) -> str:
    title = urllib.parse.unquote(metadata.get("title", "")).strip()
    return (title or PurePosixPath(key).stem or "Untitled")[:200]


def profile_for(slug: str | None) -> Profile:
    profile = Profile.objects.filter(slug=slug or settings.REELFLOW_DEFAULT_PROFILE, is_active=True).first()
    return profile or Profile.objects.get(slug=settings.REELFLOW_DEFAULT_PROFILE)


@transaction.atomic
def job_create_for_upload(*, publisher, bucket: str, key: str, version: str, size: int | None, metadata: dict) -> EncodeJob:
    """A new asset and its first encode job, for an object that just landed in the ingest bucket."""
    asset = Asset.objects.create(
        publisher=publisher,
        title=_title_from(metadata, key),
        source_bucket=bucket,
        source_key=key,
        source_version=version,
        source_size=size,
    )
    job = EncodeJob.objects.create(
        asset=asset,
        profile=profile_for(metadata.get("profile")),
        chunk_seconds=settings.REELFLOW_CHUNK_SECONDS,
        segment_seconds=settings.REELFLOW_SEGMENT_SECONDS,
        output_prefix=f"jobs/{asset.pk}",
    )
    job.output_prefix = f"assets/{asset.pk}/jobs/{job.pk}"
    job.save(update_fields=["output_prefix"])
    event_record(type="asset.created", subject=asset, owner=publisher, payload={"key": key, "size": size})
    job_event(job, "job.created", profile=job.profile.slug)
    job_state_message(job)  # live lists show a new job at once, not at its first state change
    queues.enqueue_on_commit(queues.Entry.INGEST, job.pk, rq_id=f"ingest-{job.pk}")
    return job


@transaction.atomic
def job_probe_start(*, job_id: int) -> EncodeJob | None:
    """QUEUED -> PROBING. None if the job is past that (a duplicate or re-run ingest)."""
    job = EncodeJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    if job.state not in (JobState.QUEUED, JobState.PROBING):
        return None
    job.state = JobState.PROBING
    job.started_at = job.started_at or timezone.now()
    job.save(update_fields=["state", "started_at"])
    job_event(job, "job.probing")
    job_state_message(job)
    return job


@transaction.atomic
def job_fail(
    *, job_id: int, reason: str, actor=None, failure_class: str = "permanent", detail: str = ""
) -> EncodeJob:
    """Any state -> FAILED with a reason a person can act on. Every unit and rendition that is
    not finished reaches a final state with it (queued units are dropped, running ones stop at
    their next progress report). ``failure_class`` is ``pipeline.failures``' class; ``detail``
    (ffmpeg's last lines, a traceback) goes to an event only operations staff see."""
    job = EncodeJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    if job.is_final:
        return job
    job.state = JobState.FAILED
    job.failure_reason = reason
    job.finished_at = timezone.now()
    job.save(update_fields=["state", "failure_reason", "finished_at"])
    Unit.objects.filter(job=job, state=UnitState.QUEUED).update(state=UnitState.CANCELLED)
    Unit.objects.filter(job=job, state=UnitState.RUNNING).update(state=UnitState.FAILED, error=reason[:2000])
    Rendition.objects.filter(job=job, state__in=[RenditionState.ENCODING, RenditionState.ASSEMBLING]).update(
        state=RenditionState.FAILED
    )
    if not job.asset.jobs.filter(state=JobState.PUBLISHED).exists():
        asset_state_set(job.asset, AssetState.FAILED, job=job.pk, reason=reason)
    job_event(job, "job.failed", actor=actor, reason=reason, failure_class=failure_class)
    if detail:
        # Owner-less: the publisher sees the reason, not our stack or ffmpeg's stderr.
        event_record(type="job.failure_detail", subject=job, payload={"class": failure_class, "detail": detail[-4000:]})
    job_state_message(job)
    transaction.on_commit(lambda: progress.cancel_flag_set(job_id))
    transaction.on_commit(lambda: _drop_queued_units(job_id))
    return job


def _drop_queued_units(job_id: int) -> None:
    for rq_id in Unit.objects.filter(job_id=job_id, state=UnitState.CANCELLED).values_list("rq_id", flat=True):
        if rq_id:
            queues.remove(queues.Entry.ENCODE_UNIT, rq_id)


@transaction.atomic
def job_cancel(*, job_id: int, actor=None) -> EncodeJob:
    """Stop a job: queued units are dropped, running ffmpeg processes see the flag and stop."""
    job = EncodeJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    if job.is_final:
        return job
    job.state = JobState.CANCELLED
    job.finished_at = timezone.now()
    job.save(update_fields=["state", "finished_at"])
    Unit.objects.filter(job=job, state__in=[UnitState.QUEUED, UnitState.RUNNING]).update(state=UnitState.CANCELLED)
    Rendition.objects.filter(job=job).exclude(state=RenditionState.READY).update(state=RenditionState.CANCELLED)
    if not job.asset.jobs.filter(state=JobState.PUBLISHED).exists():
        asset_state_set(job.asset, AssetState.CANCELLED, job=job.pk)
    job_event(job, "job.cancelled", actor=actor)
    job_state_message(job)
    transaction.on_commit(lambda: progress.cancel_flag_set(job_id))
    transaction.on_commit(lambda: _drop_queued_units(job_id))
    return job


