"""Quality measurement: which renditions are measured, the state of every measurement, and the
scores. Every state change happens here, in a transaction, under row locks; the ffmpeg work
runs in pipeline.quality.work and calls back into the `task_*` functions.

Measurements never hold up a job: they are planned when a video rendition becomes READY (one
task per chunk on the "quality" queue, beside packaging), and a failure marks only the task.
The scores are read through
``pipeline.quality.selectors``; when a job's last task ends,
``pipeline.services.publishing.job_quality_finished`` is called inside that transaction.

Lock order, the same everywhere: encode job, task, rendition quality, job quality
(``services.packaging.rendition_ready`` holds the job when it calls :func:`rendition_ready_plan`).
"""

import logging
import uuid
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.db.models import Count
from django.utils import timezone

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
)
from pipeline.quality import metrics
from pipeline.quality.selectors import qc_enabled
from pipeline.services.publishing import job_quality_finished

logger = logging.getLogger(__name__)

TERMINAL = (QualityTaskState.DONE, QualityTaskState.FAILED)
# A job in these states has no use for scores; its tasks wait (QUEUED) until a restart.
JOB_STOPPED = (JobState.FAILED, JobState.CANCELLED)


def _job_event(job: EncodeJob, type_: str, **payload) -> None:
    event_record(
        type=type_, subject=job, owner=job.asset.publisher, payload={"asset": job.asset_id, **payload}
    )


# --- Planning -------------------------------------------------------------------------------


def rendition_ready_plan(rendition: Rendition) -> list[int]:
    """Plan the measurement of a video rendition that just became READY: one task per chunk,
    queued once the caller's transaction commits. A rendition made again (a restart that
    re-encoded it) is measured again. Returns the task ids (none when QC is off).

    Called inside ``services.rendition_ready``, which holds the rendition and job locks.
    """
    if rendition.kind != RenditionKind.VIDEO:
        return []
    job_quality, _ = JobQuality.objects.select_for_update().get_or_create(
        job_id=rendition.job_id,
        defaults={"state": QualityState.PENDING if qc_enabled() else QualityState.OFF},
    )
    if job_quality.state == QualityState.OFF:
        return []
    if job_quality.state != QualityState.PENDING:
        job_quality.state = QualityState.PENDING
        job_quality.finished_at = None
        job_quality.save(update_fields=["state", "finished_at"])
    now = timezone.now()
    fresh = {
        "job_id": rendition.job_id, "state": QualityTaskState.QUEUED, "attempts": 0, "rq_id": "",
        "worker": "", "scores": {}, "frame_scores": {}, "frames": None, "error": "", "log_tail": "",
        "command": "", "queued_at": now, "started_at": None, "finished_at": None, "wall_s": None, "cpu_s": None,
    }  # fmt: skip
    task_ids = [
        QualityTask.objects.update_or_create(rendition=rendition, chunk_id=chunk_id, defaults=fresh)[0].pk
        for chunk_id in Chunk.objects.filter(job_id=rendition.job_id)
        .order_by("index")
        .values_list("pk", flat=True)
    ]
    RenditionQuality.objects.update_or_create(
        rendition=rendition,
        defaults={"job_id": rendition.job_id, "state": QualityState.PENDING, "scores": {}, "frames": None,
                  "tool": "", "measured_at": None},
    )  # fmt: skip
    transaction.on_commit(lambda: tasks_enqueue(task_ids=task_ids))
    return task_ids


def failed_remeasure(job: EncodeJob) -> list[str]:
    """A restart: measure again every READY rendition whose measurement failed for good (a
    rendition encoded again is measured again anyway, by ``rendition_ready_plan``). Returns the
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
        if summary.rendition.state == RenditionState.READY:
            rendition_ready_plan(summary.rendition)
            names.append(summary.rendition.name)
    return names




def tasks_enqueue(*, task_ids: list[int]) -> None:
    """Put tasks on the quality queue. Each enqueue gets a fresh RQ id, recorded on the task,
    so news about an older attempt (a dead worker's) can tell that it is stale."""
    if not task_ids:
        return
    rq_ids = {task_id: f"qc-{task_id}-{uuid.uuid4().hex[:8]}" for task_id in task_ids}
    for task_id, rq_id in rq_ids.items():
        QualityTask.objects.filter(pk=task_id).update(rq_id=rq_id)
    queues.enqueue_many(queues.Entry.MEASURE_QUALITY, [(task_id, rq_ids[task_id]) for task_id in task_ids])


# --- Tasks ----------------------------------------------------------------------------------


@transaction.atomic
def task_start(*, task_id: int, worker: str, rq_id: str = "") -> QualityTask | None:
    """QUEUED/RUNNING -> RUNNING; None when the task must not run now: already ended, a stale
    attempt, its job stopped (failed or cancelled: the task waits for a restart), or its
    rendition is being made again (a new plan will queue it)."""
    task = (
        QualityTask.objects.select_for_update(of=("self",))
        .select_related("job__asset", "rendition", "chunk")
        .get(pk=task_id)
    )
    if task.state in TERMINAL:
        return None
    if queues.stale_attempt(task.rq_id, rq_id):
        return None
    if task.job.state in JOB_STOPPED or task.rendition.state != RenditionState.READY:
        return None
    task.state = QualityTaskState.RUNNING
    task.attempts += 1
    task.worker = worker
    task.started_at = timezone.now()
    task.error = ""
    task.save(update_fields=["state", "attempts", "worker", "started_at", "error"])
    return task


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
    of an attempt that a newer one replaced (its rendition was made again) are dropped."""
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
    its aggregates over all frames (or FAILED), exactly once."""
    summary = (
        RenditionQuality.objects.select_for_update()
        .select_related("rendition")
        .get(rendition_id=rendition_id)
    )
    if summary.state != QualityState.PENDING:
        return
    tasks = list(QualityTask.objects.filter(rendition_id=rendition_id).order_by("chunk__index"))
    if any(t.state not in TERMINAL for t in tasks):
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


def reconcile_tasks(*, conn=None) -> list[int]:
    """Re-queue measurements whose RQ job is gone: Redis forgot it (restart, flush), or a
    stopped job left its tasks waiting and a restart revived the job. Returns their ids."""
    conn = conn or django_rq.get_connection(queues.QUALITY)
    cutoff = timezone.now() - timedelta(seconds=settings.REELFLOW_RECONCILE_GRACE_SECONDS)
    candidates = (
        QualityTask.objects.filter(state__in=[QualityTaskState.QUEUED, QualityTaskState.RUNNING])
        .exclude(job__state__in=JOB_STOPPED)
        .filter(rendition__state=RenditionState.READY, queued_at__lt=cutoff)
        .values_list("pk", "rq_id")
    )
    # A started measurement has no heartbeat of its own: a dead worker's is found by RQ's
    # registry cleanup, which calls the failure callback (and so the retry) itself.
    lost = [task_id for task_id, rq_id in candidates if not queues.rq_job_alive(conn, rq_id)]
    if lost:
        QualityTask.objects.filter(pk__in=lost).exclude(state__in=TERMINAL).update(
            state=QualityTaskState.QUEUED, worker=""
        )
        tasks_enqueue(task_ids=lost)
        logger.info("re-queued %s lost quality tasks", len(lost))
    return lost
