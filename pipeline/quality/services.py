"""Quality measurement: which renditions are measured, the state of every measurement, and the
scores. Every state change happens here, in a transaction, under row locks; the ffmpeg work
runs in pipeline.quality.work and calls back into the `task_*` functions.

Measurements never hold up a job, and they start while the job still encodes: a chunk's
measurements are planned as each of its video units finishes (:func:`chunk_encoded`, called by
``services.units.unit_finish``) and queued, one RQ job per chunk for a batch of its renditions
(one read of the source for all of them), once the chunk's last video unit is done. They wait
behind encoding in every worker's queue order (``quality`` comes last) and a failure marks only
the task. A rendition's aggregates are stored when all its chunks are measured. The scores are
read through ``pipeline.quality.selectors``; when a job's last task ends,
``pipeline.services.publishing.job_quality_finished`` is called inside that transaction.

Lock order, the same everywhere (a lock further right is never held while waiting for one to
its left):

    unit, rendition, encode job, chunk, task(s, by id), rendition quality, job quality

``services.units.unit_finish`` holds the unit and the rendition when it calls
:func:`chunk_encoded` (which takes the chunk, the task, the rendition quality and the job
quality, never the job); ``services.packaging.rendition_ready`` holds the rendition and the job
when it calls :func:`rendition_ready_plan`; :func:`task_finish` and :func:`task_fail` take the
job, the task, then the rendition quality and the job quality.
"""

import logging
import uuid
from collections import defaultdict
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, OuterRef
from django.utils import timezone

from core import metrics as telemetry
from core.services import event_record
from pipeline import progress, queues
from pipeline.models import (
    Chunk,
    EncodeJob,
    JobQuality,
    JobState,
    QualityState,
    QualityTask,
    QualityTaskState,
    Rendition,
    RenditionKind,
    RenditionQuality,
    RenditionState,
    Unit,
    UnitState,
)
from pipeline.quality import metrics
from pipeline.quality.selectors import qc_enabled
from pipeline.services.publishing import job_quality_finished

logger = logging.getLogger(__name__)

TERMINAL = (QualityTaskState.DONE, QualityTaskState.FAILED)
# A job in these states has no use for scores; its tasks wait (QUEUED) until a restart.
JOB_STOPPED = (JobState.FAILED, JobState.CANCELLED)
# A started measurement keeps a liveness key fresh (progress.step_heartbeat); one without it
# is lost once this long has passed since RQ started it (the moment before the key is set).
STARTED_STALE = timedelta(seconds=progress.UNIT_ALIVE_TTL_S * 2)


def _job_event(job: EncodeJob, type_: str, **payload) -> None:
    event_record(
        type=type_, subject=job, owner=job.asset.publisher, payload={"asset": job.asset_id, **payload}
    )


# --- Planning -------------------------------------------------------------------------------


def _fresh() -> dict:
    """A task's fields when it is (re)planned: waiting, not yet on the queue (no RQ id)."""
    return {
        "state": QualityTaskState.QUEUED, "attempts": 0, "rq_id": "", "worker": "", "scores": {},
        "frame_scores": {}, "frames": None, "error": "", "log_tail": "", "command": "", "queued_at": timezone.now(),
        "started_at": None, "finished_at": None, "wall_s": None, "cpu_s": None,
    }  # fmt: skip


def _job_quality(job_id: int) -> JobQuality | None:
    """The job's measurement row, made on its first plan with the mode of that moment; None
    when the job is not measured ("off")."""
    job_quality, _ = JobQuality.objects.get_or_create(
        job_id=job_id, defaults={"state": QualityState.PENDING if qc_enabled() else QualityState.OFF}
    )
    return None if job_quality.state == QualityState.OFF else job_quality


def _pending(rendition: Rendition) -> None:
    """The rendition's and the job's measurement are PENDING again (a task was planned)."""
    summary, created = RenditionQuality.objects.select_for_update().get_or_create(
        rendition=rendition, defaults={"job_id": rendition.job_id, "state": QualityState.PENDING}
    )
    if not created and summary.state != QualityState.PENDING:
        summary.state, summary.scores, summary.frames, summary.tool, summary.measured_at = (
            QualityState.PENDING, {}, None, "", None,
        )  # fmt: skip
        summary.save(update_fields=["state", "scores", "frames", "tool", "measured_at"])
    job_quality = JobQuality.objects.select_for_update().get(job_id=rendition.job_id)
    if job_quality.state != QualityState.PENDING:
        job_quality.state = QualityState.PENDING
        job_quality.finished_at = None
        job_quality.save(update_fields=["state", "finished_at"])


def _chunk_encoded(chunk_id: int) -> bool:
    """Every video unit of the chunk is DONE: its measurements can run."""
    return not (
        Unit.objects.filter(chunk_id=chunk_id, rendition__kind=RenditionKind.VIDEO).exclude(state=UnitState.DONE).exists()
    )


def _queue_waiting(chunk_ids) -> list[int]:
    """Queue, once the transaction commits, the planned tasks of those chunks that are fully
    encoded and not on the queue yet; returns their ids."""
    waiting = [
        task_id
        for chunk_id in sorted(set(chunk_ids))
        if _chunk_encoded(chunk_id)
        for task_id in QualityTask.objects.filter(chunk_id=chunk_id, state=QualityTaskState.QUEUED, rq_id="")
        .order_by("pk")
        .values_list("pk", flat=True)
    ]
    tasks_enqueue(task_ids=waiting)
    return waiting


def chunk_encoded(*, rendition: Rendition, chunk_id: int | None) -> list[int]:
    """A unit of ``rendition`` for chunk ``chunk_id`` is DONE: its measurement is planned
    (again, if the unit was encoded again), and once every video unit of the chunk is done the
    chunk's planned measurements are queued, a batch of renditions per RQ job. Returns the ids
    queued now. Nothing for audio, nor when QC is off for the job.

    Called inside ``services.units.unit_finish``, which holds the unit and rendition locks; the
    chunk's row lock serializes the chunk's units here, so the last one to finish sees all the
    others done and queues them."""
    if chunk_id is None or rendition.kind != RenditionKind.VIDEO or _job_quality(rendition.job_id) is None:
        return []
    Chunk.objects.select_for_update().filter(pk=chunk_id).first()
    QualityTask.objects.update_or_create(
        rendition=rendition, chunk_id=chunk_id, defaults={"job_id": rendition.job_id, **_fresh()}
    )
    _pending(rendition)
    return _queue_waiting([chunk_id])


def rendition_ready_plan(rendition: Rendition) -> list[int]:
    """A video rendition became READY: plan any of its chunks not planned yet (a unit that
    finished before its chunk could be planned, or QC turned on since), queued when their
    chunk is fully encoded. Chunks planned already keep their tasks: the measurement reads the
    units' outputs, which assembling the rendition (again) does not change. Returns the ids
    queued now (none when QC is off).

    Called inside ``services.rendition_ready``, which holds the rendition and job locks.
    """
    if rendition.kind != RenditionKind.VIDEO or _job_quality(rendition.job_id) is None:
        return []
    planned = set(QualityTask.objects.filter(rendition=rendition).values_list("chunk_id", flat=True))
    missing = [
        chunk_id
        for chunk_id in Chunk.objects.filter(job_id=rendition.job_id).order_by("index").values_list("pk", flat=True)
        if chunk_id not in planned
    ]
    if not missing:
        return []
    for chunk_id in missing:
        QualityTask.objects.get_or_create(
            rendition=rendition, chunk_id=chunk_id, defaults={"job_id": rendition.job_id, **_fresh()}
        )
    _pending(rendition)
    return _queue_waiting(missing)


def failed_remeasure(job: EncodeJob) -> list[str]:
    """A restart: measure again every READY rendition whose measurement failed for good (a
    unit encoded again is measured again anyway, by :func:`chunk_encoded`). Returns the
    renditions' names; none when QC is off. Called under the job's lock."""
    if not qc_enabled():
        return []
    names = []
    failed = (
        RenditionQuality.objects.filter(job_id=job.pk, state=QualityState.FAILED)
        .select_related("rendition")
        .order_by("rendition__name")
    )
    for summary in failed:
        rendition = summary.rendition
        if rendition.state != RenditionState.READY:
            continue
        retry = list(
            QualityTask.objects.filter(rendition=rendition, state=QualityTaskState.FAILED).values_list(
                "chunk_id", flat=True
            )
        )
        QualityTask.objects.filter(rendition=rendition, chunk_id__in=retry).update(**_fresh())
        rendition_ready_plan(rendition)  # and any chunk never planned
        _pending(rendition)
        _queue_waiting(retry)
        names.append(rendition.name)
    return names


def _batches(task_ids: list[int]) -> list[list[int]]:
    """The tasks grouped by chunk, at most ``REELFLOW_QC_BATCH`` renditions to a group (one
    ffmpeg run reads the source once for the group), chunks in the order given."""
    by_chunk: dict[int, list[int]] = defaultdict(list)
    chunk_of = dict(QualityTask.objects.filter(pk__in=task_ids).values_list("pk", "chunk_id"))
    for task_id in task_ids:
        if task_id in chunk_of:
            by_chunk[chunk_of[task_id]].append(task_id)
    size = max(1, settings.REELFLOW_QC_BATCH)
    return [ids[i : i + size] for ids in by_chunk.values() for i in range(0, len(ids), size)]


def tasks_enqueue(*, task_ids: list[int]) -> None:
    """Put tasks on the quality queue, a batch per chunk (:func:`_batches`). Each batch gets a
    fresh RQ id, recorded on its tasks at once (so a concurrent plan sees them queued), the
    enqueue itself once the transaction commits: news about an older attempt (a dead
    worker's) can then tell that it is stale."""
    if not task_ids:
        return
    calls = []
    for batch in _batches(task_ids):
        rq_id = f"qc-{batch[0]}-{uuid.uuid4().hex[:8]}"
        QualityTask.objects.filter(pk__in=batch).update(rq_id=rq_id, queued_at=timezone.now())
        calls.append((batch, rq_id))
    transaction.on_commit(lambda: queues.enqueue_many(queues.Entry.MEASURE_QUALITY, calls))


# --- Tasks ----------------------------------------------------------------------------------


def _unit_done(task: QualityTask) -> bool:
    """The frames a task measures are final: the unit of its chunk and rendition is DONE (a
    unit queued again, by a restart, is measured again when it finishes)."""
    return Unit.objects.filter(
        rendition_id=task.rendition_id, chunk_id=task.chunk_id, state=UnitState.DONE
    ).exists()


@transaction.atomic
def tasks_start(*, task_ids: list[int], worker: str, rq_id: str = "") -> list[QualityTask]:
    """QUEUED/RUNNING -> RUNNING for the tasks of one RQ job that must run now; left out: a
    task already ended, a stale attempt (a newer enqueue replaced this one), one whose job
    stopped (failed or cancelled: it waits for a restart), or whose unit is not DONE (being
    encoded again: a new plan will queue it)."""
    started = []
    for task_id in sorted(task_ids):
        task = (
            QualityTask.objects.select_for_update(of=("self",))
            .select_related("job__asset", "rendition", "chunk")
            .filter(pk=task_id)
            .first()
        )
        if task is None or task.state in TERMINAL or queues.stale_attempt(task.rq_id, rq_id):
            continue
        if task.job.state in JOB_STOPPED or not _unit_done(task):
            continue
        task.state = QualityTaskState.RUNNING
        task.attempts += 1
        task.worker = worker
        task.started_at = timezone.now()
        task.error = ""
        task.save(update_fields=["state", "attempts", "worker", "started_at", "error"])
        started.append(task)
    return started


def task_start(*, task_id: int, worker: str, rq_id: str = "") -> QualityTask | None:
    """:func:`tasks_start` for one task: the task, or None when it must not run now."""
    started = tasks_start(task_ids=[task_id], worker=worker, rq_id=rq_id)
    return started[0] if started else None


def _lock_task(task_id: int) -> tuple[EncodeJob, QualityTask]:
    job_id = QualityTask.objects.values_list("job_id", flat=True).get(pk=task_id)
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=job_id)
    return job, QualityTask.objects.select_for_update().get(pk=task_id)


_RESULT_FIELDS = (
    "scores", "frame_scores", "frames", "compared_width", "compared_height", "tool", "command", "wall_s", "cpu_s",
)  # fmt: skip


@transaction.atomic
def task_finish(*, task_id: int, result: dict, rq_id: str | None = None) -> QualityTask:
    """RUNNING -> DONE with the chunk's scores. The last task of a rendition stores the
    rendition's aggregates; the last task of the job ends the job's measurement. The numbers
    of an attempt that a newer one replaced (its unit was encoded again) are dropped."""
    job, task = _lock_task(task_id)
    if task.state in TERMINAL:
        return task
    if queues.stale_attempt(task.rq_id, rq_id):
        return task
    for field in _RESULT_FIELDS:
        setattr(task, field, result[field])
    task.state = QualityTaskState.DONE
    task.finished_at = timezone.now()
    task.log_tail = ""
    task.save(update_fields=[*_RESULT_FIELDS, "state", "finished_at", "log_tail"])
    if task.wall_s is not None:
        telemetry.observe_on_commit("reelflow_qc_duration_seconds", task.wall_s)
    _rendition_fan_in(job, task.rendition_id)
    _job_fan_in(job)
    _panel_changed(job)
    return task


def _panel_changed(job: EncodeJob) -> None:
    """Tell the job's open pages that its quality panel changed (they fetch it again)."""
    state = JobQuality.objects.filter(job_id=job.pk).values_list("state", flat=True).first()
    progress.publish_on_commit(job.pk, {"kind": "quality", "state": state or ""})


@transaction.atomic
def task_fail(
    *, task_id: int, reason: str, log_tail: str = "", permanent: bool, rq_id: str | None = None
) -> QualityTask:
    """Record a failed attempt. A permanent failure (or the last retry) marks the task FAILED
    with the reason; the encode job is never touched. A transient one leaves it QUEUED for
    RQ's retry. News about an attempt that a newer one replaced changes nothing."""
    job, task = _lock_task(task_id)
    if task.state in TERMINAL:
        return task
    if queues.stale_attempt(task.rq_id, rq_id):
        return task
    task.state = QualityTaskState.FAILED if permanent else QualityTaskState.QUEUED
    task.error = reason[:2000]
    task.log_tail = log_tail[-4000:]
    task.finished_at = timezone.now()
    task.save(update_fields=["state", "error", "log_tail", "finished_at"])
    if permanent:
        logger.warning("quality task %s (job %s) failed: %s", task.pk, job.pk, reason)
        _rendition_fan_in(job, task.rendition_id)
        _job_fan_in(job)
        _panel_changed(job)
    return task


# --- Fan-in ---------------------------------------------------------------------------------


def _rendition_fan_in(job: EncodeJob, rendition_id: int) -> None:
    """Under the rendition quality lock: once every chunk of the rendition is measured, store
    its aggregates over all the frames scored (every frame, or the sample of each chunk: the
    mean and 5th percentile over every chunk's sampled frames together), or FAILED, exactly
    once. ``frames`` counts the frames scored."""
    summary = (
        RenditionQuality.objects.select_for_update()
        .select_related("rendition")
        .get(rendition_id=rendition_id)
    )
    if summary.state != QualityState.PENDING:
        return
    tasks = list(QualityTask.objects.filter(rendition_id=rendition_id).order_by("chunk__index"))
    # Chunks are planned as their units finish: the rendition is measured when every chunk is.
    if any(t.state not in TERMINAL for t in tasks) or len(tasks) < Chunk.objects.filter(job=job).count():
        return
    name = summary.rendition.name
    failed = [t for t in tasks if t.state == QualityTaskState.FAILED]
    summary.measured_at = timezone.now()
    if failed:
        summary.state = QualityState.FAILED
        summary.save(update_fields=["state", "measured_at"])
        _job_event(
            job, "rendition.quality_failed", rendition=name, chunks_failed=len(failed), reason=failed[0].error
        )
        return
    # Only metrics every chunk has (a worker without libvmaf measures no VMAF): a whole-rendition
    # figure must cover the whole rendition.
    measured = [m for m in metrics.METRICS if all(m in t.frame_scores for t in tasks)]
    scores = {}
    for metric in measured:
        values = [v for t in tasks for v in metrics.frames_unpack(t.frame_scores[metric])]
        scores[metric] = metrics.summarize(values)
    summary.state = QualityState.DONE
    summary.scores = scores
    summary.frames = sum(t.frames or 0 for t in tasks)
    summary.compared_width, summary.compared_height = tasks[0].compared_width, tasks[0].compared_height
    summary.tool = "; ".join(sorted({t.tool for t in tasks}))
    summary.save(
        update_fields=[
            "state",
            "scores",
            "frames",
            "compared_width",
            "compared_height",
            "tool",
            "measured_at",
        ]
    )
    _job_event(
        job, "rendition.quality_measured", rendition=name, frames=summary.frames,
        frames_total=sum(Chunk.objects.filter(job=job).values_list("frame_count", flat=True)),
        step=max((t.frame_scores.get("step", 1) for t in tasks), default=1),
        compared=f"{summary.compared_width}x{summary.compared_height}", tool=summary.tool,
        **{metric: {k: round(v, 4) for k, v in s.items()} for metric, s in scores.items()},
    )  # fmt: skip


def _job_fan_in(job: EncodeJob) -> None:
    """Under the job quality lock: once every video rendition's every chunk has ended, the
    job's measurement is DONE (or FAILED), exactly once, and publishing is told."""
    job_quality = JobQuality.objects.select_for_update().get(job=job)
    if job_quality.state != QualityState.PENDING:
        return
    videos = Rendition.objects.filter(job=job, kind=RenditionKind.VIDEO).count()
    expected = videos * Chunk.objects.filter(job=job).count()
    ended = dict(
        QualityTask.objects.filter(job=job, state__in=TERMINAL).values_list("state").annotate(n=Count("id"))
    )
    if (
        sum(ended.values()) < expected
        or QualityTask.objects.filter(job=job).exclude(state__in=TERMINAL).exists()
    ):
        return
    failed = ended.get(QualityTaskState.FAILED, 0)
    job_quality.state = QualityState.FAILED if failed else QualityState.DONE
    job_quality.finished_at = timezone.now()
    job_quality.save(update_fields=["state", "finished_at"])
    _job_event(job, "job.quality_finished", state=job_quality.state, tasks=expected, failed=failed)
    job_quality_finished(job_id=job.pk)


# --- Lost work ------------------------------------------------------------------------------


def _alive(conn, rq_id: str) -> bool:
    """The RQ job waits in a queue (or for a retry), or runs on a worker that still beats."""
    return queues.rq_job_alive(
        conn, rq_id,
        started_alive=lambda job: progress.step_alive(rq_id) or queues.heartbeat_fresh(job, within=STARTED_STALE),
    )  # fmt: skip


def reconcile_tasks(*, conn=None) -> list[int]:
    """Re-queue measurements whose RQ job is gone or dead: Redis forgot it (restart, flush),
    its worker was killed mid-measurement (its liveness key lapsed), the enqueue after the
    plan's commit never happened, or a stopped job left its tasks waiting and a restart revived
    the job. Only tasks whose chunk is fully encoded are due. Returns their ids."""
    conn = conn or django_rq.get_connection(queues.QUALITY)
    cutoff = timezone.now() - timedelta(seconds=settings.REELFLOW_RECONCILE_GRACE_SECONDS)
    own_unit_done = Unit.objects.filter(
        rendition_id=OuterRef("rendition_id"), chunk_id=OuterRef("chunk_id"), state=UnitState.DONE
    )
    chunk_unfinished = Unit.objects.filter(chunk_id=OuterRef("chunk_id"), rendition__kind=RenditionKind.VIDEO).exclude(
        state=UnitState.DONE
    )
    candidates = (
        QualityTask.objects.filter(state__in=[QualityTaskState.QUEUED, QualityTaskState.RUNNING])
        .exclude(job__state__in=JOB_STOPPED)
        .filter(Exists(own_unit_done), ~Exists(chunk_unfinished), queued_at__lt=cutoff)
        .order_by("chunk__job_id", "chunk__index", "pk")
        .values_list("pk", "rq_id")
    )
    checked: dict[str, bool] = {}
    lost = []
    for task_id, rq_id in candidates:
        if rq_id not in checked:
            checked[rq_id] = _alive(conn, rq_id)
        if not checked[rq_id]:
            lost.append(task_id)
    if lost:
        with transaction.atomic():
            QualityTask.objects.filter(pk__in=lost).exclude(state__in=TERMINAL).update(
                state=QualityTaskState.QUEUED, worker=""
            )
            tasks_enqueue(task_ids=lost)
        logger.info("re-queued %s lost quality tasks", len(lost))
    return lost
