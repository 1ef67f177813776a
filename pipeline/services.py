"""Every state change of the pipeline: jobs, renditions, units. Each runs in a transaction,
locks the rows it decides on, records an event, and enqueues follow-up work on commit.

The heavy work (ffmpeg, S3 transfers) lives in pipeline.encoding and runs outside these
transactions; it calls back into the `*_finish` / `*_fail` functions here.
"""

import logging
import urllib.parse
import uuid
from pathlib import PurePosixPath

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.services import event_record
from pipeline import progress
from pipeline.models import (
    Artifact,
    Asset,
    AssetState,
    AudioRenditionSpec,
    Chunk,
    EncodeJob,
    JobState,
    Profile,
    Rendition,
    RenditionKind,
    RenditionState,
    Unit,
    UnitState,
    VideoRenditionSpec,
)

logger = logging.getLogger(__name__)


def _enqueue_on_commit(queue: str, func_path: str, *args, job_id: str | None = None, at_front: bool = False) -> None:
    def enqueue() -> None:
        from pipeline import jobs

        func = getattr(jobs, func_path)
        django_rq.get_queue(queue).enqueue(
            func, *args, job_id=job_id, at_front=at_front, **jobs.ENQUEUE_OPTIONS[func_path]
        )

    transaction.on_commit(enqueue)


def _job_event(job: EncodeJob, type_: str, *, actor=None, actor_label: str = "system", **payload) -> None:
    event_record(
        type=type_,
        subject=job,
        actor=actor,
        actor_label=actor_label,
        owner=job.asset.publisher,
        payload={"asset": job.asset_id, **payload},
    )


def _job_state_message(job: EncodeJob) -> None:
    progress.publish_on_commit(
        job.pk,
        {"kind": "job", "state": job.state, "reason": job.failure_reason},
        also_jobs_group=True,
    )


# --- Creating a job -------------------------------------------------------------------------


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
    _job_event(job, "job.created", profile=job.profile.slug)
    _enqueue_on_commit("ingest", "ingest", job.pk, job_id=f"ingest-{job.pk}")
    return job


# --- Probing and planning -------------------------------------------------------------------


@transaction.atomic
def job_probe_start(*, job_id: int) -> EncodeJob | None:
    """QUEUED -> PROBING. None if the job is past that (a duplicate or re-run ingest)."""
    job = EncodeJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    if job.state not in (JobState.QUEUED, JobState.PROBING):
        return None
    job.state = JobState.PROBING
    job.started_at = job.started_at or timezone.now()
    job.save(update_fields=["state", "started_at"])
    _job_event(job, "job.probing")
    _job_state_message(job)
    return job


def _rendition_plan(job: EncodeJob, info) -> tuple[list[tuple[dict, int, int]], list[dict]]:
    """(video params, width, height) per rung that fits the source, and the audio params."""
    from pipeline.ffmpeg import rendition_size

    video = info.video
    src_h = video.display_height
    specs = list(VideoRenditionSpec.objects.filter(profile=job.profile).order_by("height", "name"))
    fitting = [s for s in specs if s.height <= src_h]
    if not fitting and specs:
        # A source smaller than every rung still gets one rendition, at its own height.
        smallest = specs[0]
        fitting = [smallest]
        smallest.height = src_h - src_h % 2
    rungs = []
    for spec in fitting:
        width, height = rendition_size(source=video, height=spec.height)
        rungs.append(({**spec.params(), "height": height}, width, height))
    audio = []
    if info.audio:
        audio = [s.params() for s in AudioRenditionSpec.objects.filter(profile=job.profile)]
    return rungs, audio


@transaction.atomic
def job_plan(*, job_id: int, info, chunks: list) -> EncodeJob | None:
    """PROBING -> ENCODING: store the probe, create chunks, renditions and units, queue units."""
    from pipeline.ladders import CODEC_COST

    job = EncodeJob.objects.select_for_update().select_related("asset", "profile").get(pk=job_id)
    if job.state != JobState.PROBING:
        return None
    asset = job.asset
    asset.duration_s = info.duration
    asset.width = info.video.display_width
    asset.height = info.video.display_height
    asset.probe = info.as_dict()
    asset.save(update_fields=["duration_s", "width", "height", "probe"])

    chunk_rows = Chunk.objects.bulk_create(
        [
            Chunk(job=job, index=c.index, start_s=c.start_s, end_s=c.end_s, start_frame=c.start_frame, frame_count=c.frame_count)
            for c in chunks
        ]
    )
    rungs, audio = _rendition_plan(job, info)
    units: list[Unit] = []
    for params, width, height in rungs:
        rendition = Rendition.objects.create(
            job=job, kind=RenditionKind.VIDEO, name=params["name"], params=params,
            width=width, height=height, units_total=len(chunk_rows),
        )
        for chunk in chunk_rows:
            units.append(
                Unit(
                    job=job, rendition=rendition, chunk=chunk,
                    cost=width * height * chunk.frame_count * CODEC_COST.get(params["codec"], 1.0),
                    output_key=f"{job.output_prefix}/units/{rendition.name}/{chunk.index:05d}.mp4",
                )
            )
    for params in audio:
        rendition = Rendition.objects.create(
            job=job, kind=RenditionKind.AUDIO, name=params["name"], params=params, units_total=1
        )
        # Audio is encoded once for the whole file; its cost is small per second but long.
        units.append(
            Unit(
                job=job, rendition=rendition, chunk=None, cost=info.duration * 20_000,
                output_key=f"{job.output_prefix}/audio/{rendition.name}.mp4",
            )
        )
    Unit.objects.bulk_create(units)
    job.state = JobState.ENCODING
    job.save(update_fields=["state"])
    _job_event(job, "job.planned", chunks=len(chunk_rows), renditions=len(rungs) + len(audio), units=len(units))
    _job_state_message(job)
    unit_ids = list(Unit.objects.filter(job=job).order_by("-cost", "pk").values_list("pk", flat=True))
    transaction.on_commit(lambda: units_enqueue(unit_ids=unit_ids, at_front=job.priority > 0))
    return job


def units_enqueue(*, unit_ids: list[int], at_front: bool = False) -> None:
    """Put units on the encode queue in the order given (costliest first: the queue is FIFO).

    Each enqueue gets a fresh RQ id, recorded on the unit: a callback or a reconcile about an
    older attempt (a dead worker's) can then tell that it is stale.
    """
    from pipeline import jobs

    if not unit_ids:
        return
    queue = django_rq.get_queue("encode")
    rq_ids = {uid: f"unit-{uid}-{uuid.uuid4().hex[:8]}" for uid in unit_ids}
    for uid, rq_id in rq_ids.items():
        Unit.objects.filter(pk=uid).update(rq_job_id=rq_id)
    options = dict(jobs.ENQUEUE_OPTIONS["encode_unit"])
    options["timeout"] = options.pop("job_timeout")  # prepare_data's name for it
    datas = [
        queue.prepare_data(jobs.encode_unit, args=(uid,), job_id=rq_ids[uid], at_front=at_front, **options)
        for uid in (reversed(unit_ids) if at_front else unit_ids)
    ]
    queue.enqueue_many(datas)


@transaction.atomic
def job_fail(*, job_id: int, reason: str, actor=None) -> EncodeJob:
    """Any state -> FAILED with a reason a person can act on. Queued units are dropped."""
    job = EncodeJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    if job.is_final:
        return job
    job.state = JobState.FAILED
    job.failure_reason = reason
    job.finished_at = timezone.now()
    job.save(update_fields=["state", "failure_reason", "finished_at"])
    Unit.objects.filter(job=job, state=UnitState.QUEUED).update(state=UnitState.CANCELLED)
    asset = job.asset
    if not asset.jobs.filter(state=JobState.PUBLISHED).exists():
        asset.state = AssetState.FAILED
        asset.save(update_fields=["state"])
    _job_event(job, "job.failed", actor=actor, reason=reason)
    _job_state_message(job)
    transaction.on_commit(lambda: _drop_queued_units(job_id))
    return job


def _drop_queued_units(job_id: int) -> None:
    queue = django_rq.get_queue("encode")
    for rq_id in Unit.objects.filter(job_id=job_id, state=UnitState.CANCELLED).values_list("rq_job_id", flat=True):
        if rq_id:
            queue.remove(rq_id)


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
    _job_event(job, "job.cancelled", actor=actor)
    _job_state_message(job)
    transaction.on_commit(lambda: progress.cancel_flag_set(job_id))
    transaction.on_commit(lambda: _drop_queued_units(job_id))
    return job


# --- Units ----------------------------------------------------------------------------------


@transaction.atomic
def unit_start(*, unit_id: int, worker: str, rq_job_id: str = "") -> Unit | None:
    """QUEUED/RUNNING -> RUNNING for this worker; None if the unit must not run: done,
    cancelled, or this RQ job is a stale attempt that a newer one replaced."""
    # of=("self",): PostgreSQL refuses FOR UPDATE on the nullable side of the outer join to chunk.
    unit = Unit.objects.select_for_update(of=("self",)).select_related("job", "rendition", "chunk").get(pk=unit_id)
    if unit.state in (UnitState.DONE, UnitState.CANCELLED, UnitState.FAILED) or unit.job.is_final:
        return None
    if rq_job_id and unit.rq_job_id and rq_job_id != unit.rq_job_id:
        return None
    unit.state = UnitState.RUNNING
    unit.attempts += 1
    unit.worker = worker
    unit.started_at = timezone.now()
    unit.error = ""
    unit.save(update_fields=["state", "attempts", "worker", "started_at", "error"])
    progress.publish_on_commit(
        unit.job_id,
        {"kind": "unit", "unit": unit.pk, "rendition": unit.rendition.name, "rendition_id": unit.rendition_id,
         "chunk": unit.chunk.index if unit.chunk else None, "state": unit.state, "attempt": unit.attempts},
    )
    return unit


@transaction.atomic
def unit_finish(*, unit_id: int, result: dict) -> Unit:
    """RUNNING -> DONE; the last unit of a rendition moves it to ASSEMBLING exactly once."""
    unit = Unit.objects.select_for_update().get(pk=unit_id)
    if unit.state in (UnitState.DONE, UnitState.CANCELLED):
        return unit
    for field in ("wall_s", "ffmpeg_s", "cpu_s", "frames", "command", "log_tail"):
        setattr(unit, field, result.get(field))
    unit.log_tail = unit.log_tail or ""
    unit.command = unit.command or ""
    unit.state = UnitState.DONE
    unit.finished_at = timezone.now()
    unit.save(update_fields=["state", "finished_at", "wall_s", "ffmpeg_s", "cpu_s", "frames", "command", "log_tail"])
    # The rendition row lock is the fan-in point: two units finishing at once are serialized
    # here, and only the one that sees the counter reach the total enqueues the assemble.
    rendition = Rendition.objects.select_for_update().get(pk=unit.rendition_id)
    Rendition.objects.filter(pk=rendition.pk).update(units_done=F("units_done") + 1)
    rendition.refresh_from_db(fields=["units_done"])
    progress.publish_on_commit(
        unit.job_id,
        {"kind": "unit", "unit": unit.pk, "rendition": rendition.name, "rendition_id": rendition.pk, "state": unit.state,
         "chunk": None if unit.chunk_id is None else Chunk.objects.values_list("index", flat=True).get(pk=unit.chunk_id),
         "wall_s": unit.wall_s, "frames": unit.frames},
    )
    if rendition.units_done >= rendition.units_total and rendition.state == RenditionState.ENCODING:
        rendition.state = RenditionState.ASSEMBLING
        rendition.save(update_fields=["state"])
        _enqueue_on_commit("assemble", "assemble_rendition", rendition.pk, job_id=f"assemble-{rendition.pk}")
    return unit


@transaction.atomic
def unit_fail(*, unit_id: int, reason: str, log_tail: str = "", permanent: bool, rq_job_id: str | None = None) -> Unit:
    """Record a unit's failure. A permanent one (bad input) fails the whole job at once.

    `rq_job_id` names the attempt that failed; news about an attempt that has since been
    replaced (re-queued by the reconciler) changes nothing.
    """
    unit = Unit.objects.select_for_update().select_related("rendition").get(pk=unit_id)
    if unit.state in (UnitState.DONE, UnitState.CANCELLED):
        return unit
    if rq_job_id and unit.rq_job_id and rq_job_id != unit.rq_job_id:
        return unit
    unit.state = UnitState.FAILED if permanent else UnitState.QUEUED
    unit.error = reason
    unit.log_tail = log_tail[-4000:]
    unit.finished_at = timezone.now()
    unit.save(update_fields=["state", "error", "log_tail", "finished_at"])
    progress.publish_on_commit(
        unit.job_id,
        {"kind": "unit", "unit": unit.pk, "rendition": unit.rendition.name, "rendition_id": unit.rendition_id,
         "state": unit.state, "error": reason},
    )
    if permanent:
        job_fail(job_id=unit.job_id, reason=f"{unit.rendition.name}: {reason}")
    return unit


# --- Assembly and packaging ---------------------------------------------------------------


@transaction.atomic
def rendition_ready(*, rendition_id: int, output_key: str, stats: dict) -> Rendition:
    """ASSEMBLING -> READY; the last ready rendition moves the job to PACKAGING exactly once."""
    rendition = Rendition.objects.select_for_update().get(pk=rendition_id)
    if rendition.state == RenditionState.READY:
        return rendition
    rendition.state = RenditionState.READY
    rendition.output_key = output_key
    for field in ("frame_count", "duration_s", "bitrate_kbps", "codecs"):
        if field in stats:
            setattr(rendition, field, stats[field])
    rendition.save(update_fields=["state", "output_key", "frame_count", "duration_s", "bitrate_kbps", "codecs"])
    job = EncodeJob.objects.select_for_update().select_related("asset").get(pk=rendition.job_id)
    _job_event(job, "rendition.ready", rendition=rendition.name, **stats)
    progress.publish_on_commit(job.pk, {"kind": "rendition", "rendition": rendition.name, "rendition_id": rendition.pk, "state": rendition.state})
    pending = Rendition.objects.filter(job=job).exclude(state=RenditionState.READY).exists()
    if not pending and job.state == JobState.ENCODING:
        job.state = JobState.PACKAGING
        job.save(update_fields=["state"])
        _job_event(job, "job.packaging")
        _job_state_message(job)
        _enqueue_on_commit("assemble", "package_job", job.pk, job_id=f"package-{job.pk}")
    return rendition


@transaction.atomic
def job_publish(*, job_id: int, master_key: str, dash_key: str, poster_key: str) -> EncodeJob:
    job = EncodeJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    if job.state != JobState.PACKAGING:
        return job
    job.state = JobState.PUBLISHED
    job.master_playlist_key = master_key
    job.dash_manifest_key = dash_key
    job.finished_at = timezone.now()
    job.save(update_fields=["state", "master_playlist_key", "dash_manifest_key", "finished_at"])
    asset = job.asset
    asset.state = AssetState.READY
    asset.poster_key = poster_key
    asset.save(update_fields=["state", "poster_key"])
    _job_event(job, "job.published", master=master_key, dash=dash_key)
    _job_state_message(job)
    return job


# --- Lineage --------------------------------------------------------------------------------


def artifact_record(
    *, job_id: int, kind: str, key: str, size: int | None, step: str, inputs: dict,
    parent_keys: list[str] | None = None, bucket: str | None = None,
) -> Artifact:
    """Record (or refresh, on a re-run that rewrote the same key) what a step wrote and from what."""
    bucket = bucket or settings.S3_BUCKET_MEDIA
    with transaction.atomic():
        artifact, _ = Artifact.objects.update_or_create(
            bucket=bucket, key=key,
            defaults={"job_id": job_id, "kind": kind, "size": size, "step": step, "inputs": inputs,
                      "created_at": timezone.now()},
        )
        if parent_keys:
            artifact.parents.set(Artifact.objects.filter(bucket=bucket, key__in=parent_keys))
    return artifact


# --- Operator actions (the operations console) ----------------------------------------------
# An operator acts on a job that the pipeline gave up on, or that must jump the queue. Each
# function locks the job, decides from the rows (never from what a page showed), records who
# acted, and enqueues on commit. Nothing valid is redone: DONE units and READY renditions stay.


class JobActionRefused(ValueError):
    """The action does not apply to the job in its current state; the message says why."""


def _rq_step_enqueue_on_commit(queue_name: str, func_path: str, arg: int, rq_id: str, *, at_front: bool = False) -> None:
    """Enqueue a step with a deterministic RQ id once the transaction commits. A failed earlier
    run under the same id is taken out of the failed registry first, so the registry only
    lists what is still failed."""

    def enqueue() -> None:
        from pipeline import jobs

        queue = django_rq.get_queue(queue_name)
        queue.failed_job_registry.remove(rq_id)
        queue.enqueue(getattr(jobs, func_path), arg, job_id=rq_id, at_front=at_front, **jobs.ENQUEUE_OPTIONS[func_path])

    transaction.on_commit(enqueue)


def _failed_unit_attempts_forget(unit_ids: list[int]) -> None:
    """Drop the given units' exhausted RQ attempts from the encode queue's failed registry."""
    if not unit_ids:
        return
    registry = django_rq.get_queue("encode").failed_job_registry
    prefixes = tuple(f"unit-{uid}-" for uid in unit_ids)
    stale = [rq_id for rq_id in registry.get_job_ids(cleanup=False) if rq_id.startswith(prefixes)]
    for rq_id in stale:
        registry.remove(rq_id)


def _job_resume(job: EncodeJob, *, actor, event_type: str, first_unit_ids: list[int] | None = None, **payload) -> str:
    """Put a stopped job back to work from its first step whose output is missing or invalid.

    Returns that step: "ingest" (never planned), "encode" (units not done are re-queued, the
    ones in `first_unit_ids` first), "assemble" (every unit done, a rendition not joined) or
    "package" (every rendition ready). A unit still RUNNING is left to its worker; the
    reconciler re-queues it if that worker is gone.
    """
    from django.db.models import Count

    job_id = job.pk
    # The flag a cancel left would stop every re-run unit at its first progress report.
    transaction.on_commit(lambda: django_rq.get_connection("default").delete(progress.cancel_key(job_id)))
    job.failure_reason = ""
    job.finished_at = None
    requeue: list[int] = []
    if not Unit.objects.filter(job=job).exists():
        step = "ingest"
        job.state = JobState.QUEUED
        _rq_step_enqueue_on_commit("ingest", "ingest", job_id, f"ingest-{job_id}", at_front=job.priority > 0)
    else:
        requeue = list(
            Unit.objects.filter(job=job)
            .exclude(state__in=[UnitState.DONE, UnitState.RUNNING])
            .order_by("-cost", "pk")
            .values_list("pk", flat=True)
        )
        waiting = set(requeue)
        first = [uid for uid in (first_unit_ids or []) if uid in waiting]
        requeue = first + [uid for uid in requeue if uid not in set(first)]
        Unit.objects.filter(pk__in=requeue).update(state=UnitState.QUEUED, worker="")
        pending = False
        done_counts = dict(
            Unit.objects.filter(job=job, state=UnitState.DONE).values_list("rendition_id").annotate(n=Count("id"))
        )
        for rendition in Rendition.objects.select_for_update().filter(job=job).exclude(state=RenditionState.READY):
            pending = True
            # The counter is recomputed from the rows: it decides the fan-in below.
            rendition.units_done = done_counts.get(rendition.pk, 0)
            rendition.failure_reason = ""
            if rendition.units_done >= rendition.units_total:
                rendition.state = RenditionState.ASSEMBLING
                _rq_step_enqueue_on_commit("assemble", "assemble_rendition", rendition.pk, f"assemble-{rendition.pk}")
            else:
                rendition.state = RenditionState.ENCODING
            rendition.save(update_fields=["units_done", "failure_reason", "state"])
        if pending:
            job.state = JobState.ENCODING
            step = "encode" if requeue else "assemble"
        else:
            job.state = JobState.PACKAGING
            step = "package"
            _rq_step_enqueue_on_commit("assemble", "package_job", job_id, f"package-{job_id}")
    job.save(update_fields=["state", "failure_reason", "finished_at"])
    asset = job.asset
    if asset.state == AssetState.FAILED:
        asset.state = AssetState.PROCESSING
        asset.save(update_fields=["state"])
    _job_event(job, event_type, actor=actor, step=step, units=len(requeue), **payload)
    _job_state_message(job)
    if requeue:
        at_front = job.priority > 0
        transaction.on_commit(lambda: _failed_unit_attempts_forget(requeue))
        transaction.on_commit(lambda: units_enqueue(unit_ids=requeue, at_front=at_front))
    return step


@transaction.atomic
def job_restart(*, job_id: int, actor=None) -> str:
    """Restart a failed or cancelled job from the failed step; returns the step it resumed at."""
    job = EncodeJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    if job.state not in (JobState.FAILED, JobState.CANCELLED):
        raise JobActionRefused(
            f"Job {job.pk} is {job.get_state_display().lower()}: only failed or cancelled jobs can be restarted."
        )
    return _job_resume(job, actor=actor, event_type="job.restarted", previous=job.state)


@transaction.atomic
def job_retry_failed_units(*, job_id: int, actor=None) -> list[int]:
    """Re-run the job's failed units (first in the queue); returns their ids.

    A failed unit fails its job, which drops the units still queued: those go back on the
    queue too (after the failed ones), or the job could never finish.
    """
    job = EncodeJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    failed = list(Unit.objects.filter(job=job, state=UnitState.FAILED).order_by("-cost", "pk").values_list("pk", flat=True))
    if not failed:
        hint = " Restart it from the failed step instead." if job.state in (JobState.FAILED, JobState.CANCELLED) else ""
        raise JobActionRefused(f"Job {job.pk} has no failed units.{hint}")
    if job.state == JobState.FAILED:
        _job_resume(job, actor=actor, event_type="job.units_retried", first_unit_ids=failed, failed_units=failed)
        return failed
    if job.state != JobState.ENCODING:
        raise JobActionRefused(f"Job {job.pk} is {job.get_state_display().lower()}: its units cannot be retried.")
    Unit.objects.filter(pk__in=failed).update(state=UnitState.QUEUED, worker="")
    Rendition.objects.filter(job=job, state=RenditionState.FAILED).update(state=RenditionState.ENCODING, failure_reason="")
    _job_event(job, "job.units_retried", actor=actor, step="encode", units=len(failed), failed_units=failed)
    transaction.on_commit(lambda: _failed_unit_attempts_forget(failed))
    transaction.on_commit(lambda: units_enqueue(unit_ids=failed, at_front=True))
    return failed


PRIORITY_MAX = 100


@transaction.atomic
def job_priority_raise(*, job_id: int, actor=None) -> EncodeJob:
    """Raise the job's priority by one and move its waiting work to the front of its queue.

    Queued units get fresh RQ jobs at the front of the encode queue (their old RQ jobs are
    removed, and would find themselves stale if a worker had already taken one); a queued
    ingest or package step is moved to the front of its queue. Later enqueues of this job's
    units (re-runs, reconcile) go to the front too, since its priority is above zero.
    """
    job = EncodeJob.objects.select_for_update().select_related("asset").get(pk=job_id)
    if job.is_final or job.state == JobState.HELD:
        raise JobActionRefused(f"Job {job.pk} is {job.get_state_display().lower()}: it has no work waiting.")
    job.priority = min(max(job.priority, 0) + 1, PRIORITY_MAX)
    job.save(update_fields=["priority"])
    units = list(
        Unit.objects.filter(job=job, state=UnitState.QUEUED).order_by("-cost", "pk").values_list("pk", "rq_job_id")
    )
    steps = {
        JobState.QUEUED: ("ingest", "ingest", f"ingest-{job.pk}"),
        JobState.PACKAGING: ("assemble", "package_job", f"package-{job.pk}"),
    }
    step = steps.get(job.state)
    _job_event(job, "job.priority_raised", actor=actor, priority=job.priority, units=len(units))

    def move_to_front() -> None:
        from pipeline import jobs

        encode = django_rq.get_queue("encode")
        for _, rq_id in units:
            if rq_id:
                encode.remove(rq_id)
        still_queued = set(Unit.objects.filter(pk__in=[u for u, _ in units], state=UnitState.QUEUED).values_list("pk", flat=True))
        units_enqueue(unit_ids=[u for u, _ in units if u in still_queued], at_front=True)
        if step is not None:
            queue_name, func_path, rq_id = step
            queue = django_rq.get_queue(queue_name)
            # Only a step still waiting moves; one a worker has started is left to finish.
            if queue.remove(rq_id):
                queue.enqueue(getattr(jobs, func_path), job.pk, job_id=rq_id, at_front=True, **jobs.ENQUEUE_OPTIONS[func_path])

    transaction.on_commit(move_to_front)
    return job
