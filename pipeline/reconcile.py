"""The database is the truth; Redis may forget. This sweep puts back what it forgot.

Runs every few seconds from the scheduler. It re-enqueues:
- units RUNNING on a worker that is gone (killed, machine lost): RQ would only notice at its
  next registry cleanup, minutes later;
- units QUEUED whose RQ job no longer exists (Redis restarted or flushed);
- the single follow-up step (ingest, assemble, package) of a job whose RQ job is gone.
Every decision is re-checked under a row lock by the service it calls, so a sweep that races a
live worker does no harm: at worst a unit is queued twice and its second run finds it done.
"""

import logging
from datetime import timedelta

import django_rq
from django.db import transaction
from django.utils import timezone
from rq.job import Job
from rq.worker import Worker

from pipeline import services
from pipeline.models import EncodeJob, JobState, Rendition, RenditionState, Unit, UnitState

logger = logging.getLogger(__name__)

# A unit that started this recently may not have its worker registered yet in our view.
GRACE = timedelta(seconds=15)


def _live_workers(conn) -> set[str]:
    return {w.name for w in Worker.all(connection=conn)}


def _rq_job_alive(conn, rq_id: str, live_workers: set[str]) -> bool:
    """Waiting in a queue, or started by a worker that is still alive."""
    if not rq_id:
        return False
    try:
        job = Job.fetch(rq_id, connection=conn)
        status = job.get_status(refresh=False)
    except Exception:  # noqa: BLE001 - NoSuchJobError or an unreadable hash: not alive either way
        return False
    if status == "started":
        return job.worker_name in live_workers
    return status in ("queued", "deferred", "scheduled")


def reconcile_units(*, conn=None) -> list[int]:
    conn = conn or django_rq.get_connection("encode")
    live = _live_workers(conn)
    cutoff = timezone.now() - GRACE
    requeue: list[int] = []
    running = Unit.objects.filter(state=UnitState.RUNNING, started_at__lt=cutoff, job__state=JobState.ENCODING)
    for unit_id, worker in running.values_list("pk", "worker"):
        if worker not in live:
            requeue.append(unit_id)
    queued = Unit.objects.filter(state=UnitState.QUEUED, job__state=JobState.ENCODING)
    for unit_id, rq_id in queued.values_list("pk", "rq_job_id"):
        if not _rq_job_alive(conn, rq_id, live):
            requeue.append(unit_id)
    if requeue:
        with transaction.atomic():
            Unit.objects.filter(pk__in=requeue).exclude(state__in=[UnitState.DONE, UnitState.CANCELLED]).update(
                state=UnitState.QUEUED, worker=""
            )
        services.units_enqueue(
            unit_ids=list(Unit.objects.filter(pk__in=requeue).order_by("-cost").values_list("pk", flat=True))
        )
        logger.warning("reconcile re-queued %d unit(s): %s", len(requeue), requeue[:20])
    return requeue


def reconcile_steps(*, conn=None) -> list[str]:
    """Re-enqueue a lost ingest, assemble or package step (their RQ ids are deterministic)."""
    from pipeline import jobs

    conn = conn or django_rq.get_connection("default")
    live = _live_workers(conn)
    redone = []
    cutoff = timezone.now() - GRACE
    for job_id in EncodeJob.objects.filter(state__in=[JobState.QUEUED, JobState.PROBING], created_at__lt=cutoff).values_list(
        "pk", flat=True
    ):
        if not _rq_job_alive(conn, f"ingest-{job_id}", live):
            django_rq.get_queue("ingest").enqueue(jobs.ingest, job_id, job_id=f"ingest-{job_id}", **jobs.ENQUEUE_OPTIONS["ingest"])
            redone.append(f"ingest-{job_id}")
    for rendition_id in Rendition.objects.filter(
        state=RenditionState.ASSEMBLING, job__state=JobState.ENCODING
    ).values_list("pk", flat=True):
        rq_id = f"assemble-{rendition_id}"
        if not _rq_job_alive(conn, rq_id, live):
            django_rq.get_queue("assemble").enqueue(
                jobs.assemble_rendition, rendition_id, job_id=rq_id, **jobs.ENQUEUE_OPTIONS["assemble_rendition"]
            )
            redone.append(rq_id)
    for job_id in EncodeJob.objects.filter(state=JobState.PACKAGING).values_list("pk", flat=True):
        rq_id = f"package-{job_id}"
        if not _rq_job_alive(conn, rq_id, live):
            django_rq.get_queue("assemble").enqueue(
                jobs.package_job, job_id, job_id=rq_id, **jobs.ENQUEUE_OPTIONS["package_job"]
            )
            redone.append(rq_id)
    if redone:
        logger.warning("reconcile re-enqueued steps: %s", redone)
    return redone


def reconcile_all() -> dict:
    return {"units": reconcile_units(), "steps": reconcile_steps()}
