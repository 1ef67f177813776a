"""The database is the truth; Redis may forget. This sweep puts back what it forgot.

Runs every few seconds from the scheduler. It re-enqueues:
- units RUNNING whose liveness key has lapsed (worker killed, machine lost): RQ would only
  notice at its next registry cleanup, minutes later;
- units QUEUED whose RQ job no longer exists (Redis restarted or flushed);
- the single follow-up step (ingest, assemble, package) of a job whose RQ job is gone.
Every decision is re-checked under a row lock by the service it calls, so a sweep that races a
live worker does no harm: at worst a unit is queued twice and its second run finds it done.
"""

import logging
from datetime import UTC, timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from rq.job import Job

from pipeline import progress, services
from pipeline.models import EncodeJob, JobState, Rendition, RenditionState, Unit, UnitState

logger = logging.getLogger(__name__)



# A started step (ingest, assemble, package) keeps a liveness key fresh while it runs
# (progress.step_heartbeat); one without its key is lost once this long has passed since RQ
# started it (the key is set before any work, so this only covers the moment in between).
STARTED_JOB_STALE = timedelta(seconds=progress.UNIT_ALIVE_TTL_S * 2)


def _rq_job_alive(conn, rq_id: str) -> bool:
    """Waiting in a queue, or started by a worker that still beats."""
    if not rq_id:
        return False
    try:
        job = Job.fetch(rq_id, connection=conn)
        status = job.get_status(refresh=False)
    except Exception:  # noqa: BLE001 - NoSuchJobError or an unreadable hash: not alive either way
        return False
    if status == "started":
        if progress.step_alive(rq_id):
            return True
        beat = job.last_heartbeat or job.started_at
        return beat is not None and timezone.now() - beat.replace(tzinfo=UTC) < STARTED_JOB_STALE
    return status in ("queued", "deferred", "scheduled")


def reconcile_units(*, conn=None) -> list[int]:
    conn = conn or django_rq.get_connection("encode")
    cutoff = timezone.now() - timedelta(seconds=settings.REELFLOW_RECONCILE_GRACE_SECONDS)
    running = list(
        Unit.objects.filter(state=UnitState.RUNNING, started_at__lt=cutoff, job__state=JobState.ENCODING)
        .values_list("pk", flat=True)
    )
    alive = progress.units_alive(running)
    requeue: list[int] = [unit_id for unit_id in running if unit_id not in alive]
    queued = Unit.objects.filter(state=UnitState.QUEUED, job__state=JobState.ENCODING)
    for unit_id, rq_id in queued.values_list("pk", "rq_job_id"):
        if not _rq_job_alive(conn, rq_id):
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
    redone = []
    cutoff = timezone.now() - timedelta(seconds=settings.REELFLOW_RECONCILE_GRACE_SECONDS)
    for job_id in EncodeJob.objects.filter(state__in=[JobState.QUEUED, JobState.PROBING], created_at__lt=cutoff).values_list(
        "pk", flat=True
    ):
        if not _rq_job_alive(conn, f"ingest-{job_id}"):
            django_rq.get_queue("ingest").enqueue(jobs.ingest, job_id, job_id=f"ingest-{job_id}", **jobs.ENQUEUE_OPTIONS["ingest"])
            redone.append(f"ingest-{job_id}")
    for rendition_id in Rendition.objects.filter(
        state=RenditionState.ASSEMBLING, job__state=JobState.ENCODING
    ).values_list("pk", flat=True):
        rq_id = f"assemble-{rendition_id}"
        if not _rq_job_alive(conn, rq_id):
            django_rq.get_queue("assemble").enqueue(
                jobs.assemble_rendition, rendition_id, job_id=rq_id, **jobs.ENQUEUE_OPTIONS["assemble_rendition"]
            )
            redone.append(rq_id)
    for job_id in EncodeJob.objects.filter(state=JobState.PACKAGING).values_list("pk", flat=True):
        rq_id = f"package-{job_id}"
        if not _rq_job_alive(conn, rq_id):
            django_rq.get_queue("assemble").enqueue(
                jobs.package_job, job_id, job_id=rq_id, **jobs.ENQUEUE_OPTIONS["package_job"]
            )
            redone.append(rq_id)
    if redone:
        logger.warning("reconcile re-enqueued steps: %s", redone)
    return redone


def reconcile_all() -> dict:
    return {"units": reconcile_units(), "steps": reconcile_steps()}
