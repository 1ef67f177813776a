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
    Review,
    RuleEvaluation,
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


def _unit_event(unit: Unit, type_: str, **payload) -> None:
    """unit.* events: subject the unit, owner the asset's publisher (one indexed lookup)."""
    owner = Asset.objects.select_related("publisher").get(jobs=unit.job_id).publisher
    event_record(
        type=type_, subject=unit, owner=owner,
        payload={"job": unit.job_id, "rendition": unit.rendition.name,
                 "chunk": unit.chunk.index if unit.chunk_id else None, **payload},
    )


def _asset_event(asset: Asset, type_: str, **payload) -> None:
    event_record(type=type_, subject=asset, owner=asset.publisher, payload={"state": asset.state, **payload})


def _asset_state_set(asset: Asset, state: str, **payload) -> None:
    if asset.state == state:
        return
    asset.state = state
    asset.save(update_fields=["state"])
    _asset_event(asset, f"asset.{state}", **payload)


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
    _job_state_message(job)  # live lists show a new job at once, not at its first state change
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
    from pipeline.ladders import AUDIO_COST_PER_S, CODEC_COST

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
                    output_key=unit_output_key(job, rendition, chunk),
                )
            )
    for params in audio:
        rendition = Rendition.objects.create(
            job=job, kind=RenditionKind.AUDIO, name=params["name"], params=params, units_total=1
        )
        # Audio is encoded once for the whole file, priced per second (ladders.AUDIO_COST_PER_S).
        units.append(
            Unit(
                job=job, rendition=rendition, chunk=None, cost=info.duration * AUDIO_COST_PER_S,
                output_key=unit_output_key(job, rendition, None),
            )
        )
    Unit.objects.bulk_create(units)
    job.state = JobState.ENCODING
    job.save(update_fields=["state"])
    _job_event(job, "job.planned", chunks=len(chunk_rows), renditions=len(rungs) + len(audio), units=len(units))
    _job_state_message(job)
    unit_ids = _queue_order(job, info)
    transaction.on_commit(lambda: units_enqueue(unit_ids=unit_ids, at_front=job.priority > 0))
    return job


def _queue_order(job: EncodeJob, info) -> list[int]:
    """Longest first, each chunk's other rungs after the unit that decodes it (pipeline.scheduling)."""
    from pipeline import decoded_cache, scheduling

    video = info.video
    shared = settings.REELFLOW_DECODED_CACHE_MB > 0 and decoded_cache.frame_bytes(
        pix_fmt=video.pix_fmt, width=video.width, height=video.height
    ) is not None
    work = [
        scheduling.Work(
            key=pk, cost=cost, chunk=chunk_id,
            decode_cost=frames * video.width * video.height * scheduling.DECODE_SHARE if chunk_id else 0.0,
        )
        for pk, cost, chunk_id, frames in Unit.objects.filter(job=job).values_list("pk", "cost", "chunk_id", "chunk__frame_count")
    ]  # fmt: skip
    return scheduling.queue_order(work, workers=scheduling.encode_workers(), shared_decode=shared)


def params_digest(params: dict) -> str:
    """Eight hex digits naming a rendition's parameters: outputs of different parameters never
    share a key, so a changed rung can never be mistaken for a valid earlier output."""
    import hashlib
    import json

    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:8]


def unit_output_key(job: EncodeJob, rendition: Rendition, chunk: Chunk | None) -> str:
    tag = f"{rendition.name}-{params_digest(rendition.params)}"
    if chunk is None:
        return f"{job.output_prefix}/audio/{tag}.mp4"
    return f"{job.output_prefix}/units/{tag}/{chunk.index:05d}.mp4"


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
    if not job.asset.jobs.filter(state=JobState.PUBLISHED).exists():
        _asset_state_set(job.asset, AssetState.FAILED, job=job.pk, reason=reason)
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
    if not job.asset.jobs.filter(state=JobState.PUBLISHED).exists():
        _asset_state_set(job.asset, AssetState.CANCELLED, job=job.pk)
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
    _unit_event(unit, "unit.started", attempt=unit.attempts, worker=worker)
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
    from core.s3 import redact_presigned

    unit.log_tail = redact_presigned(unit.log_tail or "")
    unit.command = redact_presigned(unit.command or "")
    unit.state = UnitState.DONE
    unit.finished_at = timezone.now()
    unit.save(update_fields=["state", "finished_at", "wall_s", "ffmpeg_s", "cpu_s", "frames", "command", "log_tail"])
    _unit_event(unit, "unit.done", frames=unit.frames, wall_s=unit.wall_s)
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
        _job_event(EncodeJob.objects.select_related("asset__publisher").get(pk=unit.job_id), "rendition.assembling",
                   rendition=rendition.name)
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
    _unit_event(unit, "unit.failed" if permanent else "unit.retrying", reason=reason, attempt=unit.attempts)
    progress.publish_on_commit(
        unit.job_id,
        {"kind": "unit", "unit": unit.pk, "rendition": unit.rendition.name, "rendition_id": unit.rendition_id,
         "state": unit.state, "error": reason},
    )
    if permanent:
        job_fail(job_id=unit.job_id, reason=f"{unit.rendition.name}: {reason}")
    return unit


# --- Assembly and packaging ---------------------------------------------------------------


PLAYABLE_URL_SECONDS = 24 * 3600


@transaction.atomic
def rendition_ready(*, rendition_id: int, output_key: str, stats: dict) -> Rendition:
    """ASSEMBLING -> READY; the last ready rendition moves the job to PACKAGING exactly once.

    A ready rendition is playable on its own (a progressive MP4): a `rendition.playable`
    event says so at once, with a URL valid for a day, before the job as a whole is done."""
    from core import s3

    rendition = Rendition.objects.select_for_update().get(pk=rendition_id)
    if rendition.state == RenditionState.READY:
        return rendition
    rendition.state = RenditionState.READY
    rendition.output_key = output_key
    for field in ("frame_count", "duration_s", "bitrate_kbps", "codecs"):
        if field in stats:
            setattr(rendition, field, stats[field])
    rendition.save(update_fields=["state", "output_key", "frame_count", "duration_s", "bitrate_kbps", "codecs"])
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=rendition.job_id)
    _job_event(job, "rendition.ready", rendition=rendition.name, **stats)
    _job_event(
        job, "rendition.playable", rendition=rendition.name, kind=rendition.kind, height=rendition.height,
        width=rendition.width, bitrate_kbps=rendition.bitrate_kbps, duration_s=rendition.duration_s,
        url=s3.presign_get(settings.S3_BUCKET_MEDIA, output_key, expires=PLAYABLE_URL_SECONDS),
        url_expires_s=PLAYABLE_URL_SECONDS,
    )
    progress.publish_on_commit(job.pk, {"kind": "rendition", "rendition": rendition.name, "rendition_id": rendition.pk, "state": rendition.state})
    if rendition.kind == RenditionKind.VIDEO:
        _quality_plan(rendition)
    pending = Rendition.objects.filter(job=job).exclude(state=RenditionState.READY).exists()
    if not pending and job.state == JobState.ENCODING:
        job.state = JobState.PACKAGING
        job.save(update_fields=["state"])
        _job_event(job, "job.packaging")
        _job_state_message(job)
        _enqueue_on_commit("assemble", "package_job", job.pk, job_id=f"package-{job.pk}")
    return rendition


def _quality_plan(rendition: Rendition) -> None:
    """Queue the rendition's quality measurement (pipeline.quality), if that is installed."""
    try:
        from pipeline import quality
    except ImportError:
        return
    plan = getattr(quality, "rendition_ready_plan", None)
    if plan is not None:
        plan(rendition)


def _quality_remeasure(job: EncodeJob) -> list[str]:
    try:
        from pipeline import quality
    except ImportError:
        return []
    remeasure = getattr(quality, "failed_remeasure", None)
    return remeasure(job) if remeasure is not None else []


def published_prefix(job: EncodeJob) -> str:
    """Where a published package lives: one stable folder per asset and job, apart from the
    jobs' working outputs (a CDN or a public-read policy can be pointed at `published/`)."""
    return f"published/{job.asset_id}/{job.pk}"


@transaction.atomic
def job_rules_decide_early(*, job_id: int) -> str | None:
    """A PACKAGING job, before its package is written: when the publish rules can be decided now
    (no quality measurement pending) and all pass, record that evaluation and return the
    published prefix. The package is then written there directly and the job is PUBLISHED as
    soon as it is: no copy of every file after. Every input of the rules (renditions, unit
    sizes, quality, the publisher) is final by now.

    None: write the package to the job's own prefix; the rules are checked once it is written
    (a failing rule holds the job there, out of the published prefix, for review)."""
    from pipeline import rules

    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=job_id)
    if job.state != JobState.PACKAGING:
        return None
    applicable = rules.rules_for_job(job)
    if rules.needs_quality(applicable) and rules.quality_state(job) == "pending":
        return None
    outcomes = rules.evaluate(job, applicable)
    if not all(o.passed for o in outcomes):
        return None
    evaluation = RuleEvaluation.objects.create(
        job=job, passed=True, results=[o.as_dict() for o in outcomes], rule_sets=sorted({o.rule_set for o in outcomes}),
    )
    _job_event(job, "job.rules_evaluated", evaluation=evaluation.pk, passed=True, rules=len(outcomes), failures=[])
    return published_prefix(job)


@transaction.atomic
def job_packaged(*, job_id: int, master_key: str, dash_key: str, poster_key: str, in_place: bool = False) -> EncodeJob:
    """PACKAGING -> CHECKING: the package is written; the publish rules decide what follows.

    ``in_place``: the rules passed before packaging (:func:`job_rules_decide_early`) and the
    package was written to the published prefix: PACKAGING -> PUBLISHED."""
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=job_id)
    if job.state != JobState.PACKAGING:
        return job
    if in_place:
        _job_event(job, "job.packaged", master=master_key, dash=dash_key)
        _job_published(job, master_key=master_key, dash_key=dash_key, poster_key=poster_key,
                       prefix=published_prefix(job))
        return job
    job.state = JobState.CHECKING
    job.master_playlist_key = master_key
    job.dash_manifest_key = dash_key
    job.save(update_fields=["state", "master_playlist_key", "dash_manifest_key"])
    asset = job.asset
    asset.poster_key = poster_key
    asset.save(update_fields=["poster_key"])
    _job_event(job, "job.packaged", master=master_key, dash=dash_key)
    _job_state_message(job)
    _job_rules_check(job)
    return job


def _job_rules_check(job: EncodeJob, *, actor=None) -> RuleEvaluation | None:
    """Evaluate a CHECKING job (locked by the caller) against its rules, unless a quality rule
    applies and the measurements are still running: `job_quality_finished` comes back then.

    All pass -> PUBLISHING (the promote step copies the package); any fails -> HELD, each
    failing rule named with its measured value."""
    from pipeline import rules

    applicable = rules.rules_for_job(job)
    if rules.needs_quality(applicable) and rules.quality_state(job) == "pending":
        _job_event(job, "job.waiting_for_quality")
        return None
    outcomes = rules.evaluate(job, applicable)
    passed = all(o.passed for o in outcomes)
    evaluation = RuleEvaluation.objects.create(
        job=job, passed=passed, results=[o.as_dict() for o in outcomes],
        rule_sets=sorted({o.rule_set for o in outcomes}),
    )
    failures = [f"{o.label}: {o.measured}" for o in outcomes if not o.passed]
    _job_event(
        job, "job.rules_evaluated", actor=actor, evaluation=evaluation.pk, passed=passed,
        rules=len(outcomes), failures=failures,
    )
    if passed:
        _job_promote(job, actor=actor)
    else:
        job.state = JobState.HELD
        job.failure_reason = "Held for review: " + "; ".join(failures)
        job.save(update_fields=["state", "failure_reason"])
        _asset_state_set(job.asset, AssetState.HELD, job=job.pk)
        _job_event(job, "job.held", actor=actor, evaluation=evaluation.pk, failures=failures)
        _job_state_message(job)
    return evaluation


def _job_promote(job: EncodeJob, *, actor=None) -> None:
    job.state = JobState.PUBLISHING
    job.failure_reason = ""
    job.save(update_fields=["state", "failure_reason"])
    _job_event(job, "job.publishing", actor=actor)
    _job_state_message(job)
    _rq_step_enqueue_on_commit("assemble", "publish_job", job.pk, f"publish-{job.pk}")


@transaction.atomic
def job_quality_finished(*, job_id: int) -> EncodeJob:
    """The last quality measurement of the job ended: a job waiting on it is checked now."""
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=job_id)
    if job.state == JobState.CHECKING:
        _job_rules_check(job)
    return job


@transaction.atomic
def job_publish(*, job_id: int, master_key: str, dash_key: str, poster_key: str, published_prefix: str) -> EncodeJob:
    """PUBLISHING -> PUBLISHED once the package is promoted to the published prefix."""
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=job_id)
    if job.state != JobState.PUBLISHING:
        return job
    _job_published(job, master_key=master_key, dash_key=dash_key, poster_key=poster_key, prefix=published_prefix)
    return job


def _job_published(job: EncodeJob, *, master_key: str, dash_key: str, poster_key: str, prefix: str) -> None:
    job.state = JobState.PUBLISHED
    job.master_playlist_key = master_key
    job.dash_manifest_key = dash_key
    job.published_prefix = prefix
    job.finished_at = timezone.now()
    job.save(update_fields=["state", "master_playlist_key", "dash_manifest_key", "published_prefix", "finished_at"])
    asset = job.asset
    asset.poster_key = poster_key
    asset.save(update_fields=["poster_key"])
    _asset_state_set(asset, AssetState.READY, job=job.pk)
    _job_event(job, "job.published", master=master_key, dash=dash_key, prefix=prefix)
    _job_state_message(job)


@transaction.atomic
def job_review(*, job_id: int, decision: str, reason: str, actor) -> EncodeJob:
    """An operator's decision on a HELD job: approve (publish anyway) or reject, with a reason."""
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=job_id)
    if job.state != JobState.HELD:
        raise JobActionRefused(
            f"Job {job.pk} is {job.get_state_display().lower()}: only a job held for review can be approved or rejected."
        )
    reason = (reason or "").strip()
    if len(reason) < 3:
        raise JobActionRefused("Give a reason for the decision: it is recorded with the job.")
    if decision not in Review.Decision.values:
        raise JobActionRefused(f"Unknown decision {decision!r}.")
    evaluation = job.evaluations.order_by("-created_at", "-id").first()
    Review.objects.create(job=job, evaluation=evaluation, decision=decision, reason=reason[:2000], actor=actor)
    if decision == Review.Decision.APPROVE:
        _job_event(job, "job.approved", actor=actor, reason=reason, evaluation=evaluation.pk if evaluation else None)
        _job_promote(job, actor=actor)
    else:
        job.state = JobState.REJECTED
        job.finished_at = timezone.now()
        job.save(update_fields=["state", "finished_at"])
        if not job.asset.jobs.filter(state=JobState.PUBLISHED).exists():
            _asset_state_set(job.asset, AssetState.REJECTED, job=job.pk)
        _job_event(job, "job.rejected", actor=actor, reason=reason)
        _job_state_message(job)
    return job


# --- Lineage --------------------------------------------------------------------------------


def artifact_record(
    *, job_id: int, kind: str, key: str, size: int | None, step: str, inputs: dict,
    parent_keys: list[str] | None = None, bucket: str | None = None,
) -> Artifact:
    """Record (or refresh, on a re-run that rewrote the same key) what a step wrote and from what."""
    from core.s3 import redact_presigned

    bucket = bucket or settings.S3_BUCKET_MEDIA
    if isinstance(inputs.get("command"), str):
        inputs = {**inputs, "command": redact_presigned(inputs["command"])}
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
    if job.asset.state in (AssetState.FAILED, AssetState.CANCELLED, AssetState.HELD, AssetState.REJECTED):
        _asset_state_set(job.asset, AssetState.PROCESSING, job=job.pk)
    _job_event(job, event_type, actor=actor, step=step, units=len(requeue), **payload)
    _job_state_message(job)
    if requeue:
        at_front = job.priority > 0
        transaction.on_commit(lambda: _failed_unit_attempts_forget(requeue))
        transaction.on_commit(lambda: units_enqueue(unit_ids=requeue, at_front=at_front))
    return step


RESTARTABLE_STATES = (JobState.FAILED, JobState.CANCELLED, JobState.HELD, JobState.REJECTED)


def _stored_outputs_check(job_id: int) -> tuple[set[int], set[int]]:
    """(DONE units, READY renditions) of the job whose output is missing from S3 or is not
    what the row says (frame count kept in the object's metadata). Runs before any lock:
    it is a HEAD per output."""
    from botocore.exceptions import ClientError

    from core import s3

    client, bucket = s3.client(), settings.S3_BUCKET_MEDIA

    def valid(key: str, frames: int | None) -> bool:
        if not key:
            return False
        try:
            head = client.head_object(Bucket=bucket, Key=key)
        except ClientError:
            return False
        stored = head.get("Metadata", {}).get("frames")
        return frames is None or stored is None or stored == str(frames)

    bad_units = {
        uid for uid, key, frames in Unit.objects.filter(job_id=job_id, state=UnitState.DONE)
        .values_list("pk", "output_key", "chunk__frame_count")
        if not valid(key, frames)
    }
    bad_renditions = {
        rid for rid, key, frames, kind in Rendition.objects.filter(job_id=job_id, state=RenditionState.READY)
        .values_list("pk", "output_key", "frame_count", "kind")
        if not valid(key, frames if kind == RenditionKind.VIDEO else None)
    }
    return bad_units, bad_renditions


def _job_replan(job: EncodeJob) -> dict[str, list[str]]:
    """Bring the job's renditions in line with its profile as it is now: a rung whose
    parameters changed is reset (its units get new keys and run again), a new rung is added
    with its units, a removed one is dropped. Unchanged renditions are not touched."""
    from pipeline.encoding import video_info_from_json
    from pipeline.ladders import AUDIO_COST_PER_S, CODEC_COST

    probe = job.asset.probe or {}
    if not probe.get("video"):
        return {"changed": [], "added": [], "removed": []}
    info = type("_Probe", (), {"video": video_info_from_json(probe["video"]), "audio": probe.get("audio")})()
    rungs, audio = _rendition_plan(job, info)
    wanted = {params["name"]: (RenditionKind.VIDEO, params, width, height) for params, width, height in rungs}
    wanted.update({params["name"]: (RenditionKind.AUDIO, params, None, None) for params in audio})
    chunks = list(job.chunks.order_by("index"))
    existing = {r.name: r for r in Rendition.objects.select_for_update().filter(job=job)}
    changes: dict[str, list[str]] = {"changed": [], "added": [], "removed": []}
    for name, rendition in existing.items():
        if name not in wanted:
            rendition.delete()
            changes["removed"].append(name)
    for name, (kind, params, width, height) in wanted.items():
        rendition = existing.get(name)
        if rendition is not None and rendition.params == params:
            continue
        if rendition is None:
            rendition = Rendition(job=job, kind=kind, name=name)
            changes["added"].append(name)
        else:
            changes["changed"].append(name)
        rendition.params, rendition.width, rendition.height = params, width, height
        rendition.state = RenditionState.ENCODING
        rendition.units_total = len(chunks) if kind == RenditionKind.VIDEO else 1
        rendition.units_done = 0
        rendition.output_key, rendition.frame_count, rendition.duration_s, rendition.bitrate_kbps = "", None, None, None
        rendition.failure_reason = ""
        rendition.save()
        Unit.objects.filter(rendition=rendition).delete()
        Unit.objects.bulk_create(
            [
                Unit(job=job, rendition=rendition, chunk=chunk, output_key=unit_output_key(job, rendition, chunk),
                     cost=width * height * chunk.frame_count * CODEC_COST.get(params["codec"], 1.0))
                for chunk in chunks
            ]
            if kind == RenditionKind.VIDEO
            else [Unit(job=job, rendition=rendition, chunk=None, output_key=unit_output_key(job, rendition, None),
                       cost=(job.asset.duration_s or 0) * AUDIO_COST_PER_S)]
        )
    return changes


def _restartable_or_refuse(job: EncodeJob) -> None:
    if job.state not in RESTARTABLE_STATES:
        raise JobActionRefused(
            f"Job {job.pk} is {job.get_state_display().lower()}: only failed, cancelled, held or rejected jobs can be restarted."
        )


def job_restart(*, job_id: int, actor=None) -> str:
    """Restart a failed, cancelled, held or rejected job; returns the step it resumed at.

    Only what is invalid or missing runs again: renditions whose profile rung changed since
    the job was planned, units and renditions whose stored output is gone or wrong, and the
    steps after them. Everything valid is reused. A held job with nothing to redo is checked
    against its rules again (a publisher verified since, a rule edited)."""
    _restartable_or_refuse(EncodeJob.objects.get(pk=job_id))  # before any S3 request
    bad_units, bad_renditions = _stored_outputs_check(job_id)
    return _job_restart_locked(job_id=job_id, actor=actor, bad_units=bad_units, bad_renditions=bad_renditions)


@transaction.atomic
def _job_restart_locked(*, job_id: int, actor, bad_units: set[int], bad_renditions: set[int]) -> str:
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher", "profile").get(pk=job_id)
    _restartable_or_refuse(job)
    previous = job.state
    changes = _job_replan(job) if Unit.objects.filter(job=job).exists() else {"changed": [], "added": [], "removed": []}
    invalid_units = list(Unit.objects.filter(pk__in=bad_units, state=UnitState.DONE).values_list("pk", flat=True))
    Unit.objects.filter(pk__in=invalid_units).update(state=UnitState.QUEUED, attempts=0, worker="")
    invalid_renditions = list(
        Rendition.objects.filter(pk__in=bad_renditions, state=RenditionState.READY).values_list("name", flat=True)
    )
    Rendition.objects.filter(pk__in=bad_renditions, state=RenditionState.READY).update(state=RenditionState.ASSEMBLING)
    redo = bool(invalid_units or invalid_renditions or any(changes.values()))
    # A measurement that failed for good is taken again; a held job waits for it.
    remeasured = _quality_remeasure(job)
    if remeasured:
        changes["remeasured"] = remeasured
    if previous in (JobState.HELD, JobState.REJECTED) and not redo:
        job.state = JobState.CHECKING
        job.failure_reason = ""
        job.finished_at = None
        job.save(update_fields=["state", "failure_reason", "finished_at"])
        _asset_state_set(job.asset, AssetState.PROCESSING, job=job.pk)
        _job_event(
            job, "job.restarted", actor=actor, step="check", previous=previous, units=0, remeasured=remeasured
        )
        _job_state_message(job)
        _job_rules_check(job, actor=actor)
        return "check"
    return _job_resume(
        job, actor=actor, event_type="job.restarted", previous=previous,
        invalid_units=invalid_units, invalid_renditions=invalid_renditions, **changes,
    )


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
