"""The database is the truth; Redis may forget. This sweep puts back what it forgot.

Runs every few seconds from the scheduler. It re-enqueues:
- units RUNNING whose liveness key has lapsed (worker killed, machine lost): RQ would only
  notice at its next registry cleanup, minutes later;
- units QUEUED whose RQ job no longer exists (Redis restarted or flushed);
- the single follow-up step (ingest, assemble, package, publish) of a job whose RQ job is gone.
Every decision is re-checked under a row lock by the service it calls, so a sweep that races a
live worker does no harm: at worst a unit is queued twice and its second run finds it done.
"""

import logging
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from pipeline import progress, queues
from pipeline.models import EncodeJob, JobState, Rendition, RenditionState, Unit, UnitState
from pipeline.services.units import units_enqueue

logger = logging.getLogger(__name__)


# A started step (ingest, assemble, package, publish) keeps a liveness key fresh while it runs
# (progress.step_heartbeat); one without its key is lost once this long has passed since RQ
# started it (the key is set before any work, so this only covers the moment in between).
STARTED_JOB_STALE = timedelta(seconds=progress.UNIT_ALIVE_TTL_S * 2)


def _step_alive(conn, rq_id: str) -> bool:
    """Waiting in a queue, or started by a worker that still beats."""
    return queues.rq_job_alive(
        conn, rq_id,
        started_alive=lambda job: progress.step_alive(rq_id) or queues.heartbeat_fresh(job, within=STARTED_JOB_STALE),
    )


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
    for unit_id, rq_id in queued.values_list("pk", "rq_id"):
        if not _step_alive(conn, rq_id):
            requeue.append(unit_id)
    if requeue:
        with transaction.atomic():
            Unit.objects.filter(pk__in=requeue).exclude(state__in=[UnitState.DONE, UnitState.CANCELLED]).update(
                state=UnitState.QUEUED, worker=""
            )
        units_enqueue(
            unit_ids=list(Unit.objects.filter(pk__in=requeue).order_by("-cost").values_list("pk", flat=True))
        )
        logger.warning("reconcile re-queued %d unit(s): %s", len(requeue), requeue[:20])
    return requeue


def _waiting_steps(cutoff) -> list[tuple[str, int, str]]:
    """(entry, argument, RQ id) of every step the database says is due: its RQ ids are
    deterministic, so a lost one is found by id."""
    E = queues.Entry
    ingest = EncodeJob.objects.filter(state__in=[JobState.QUEUED, JobState.PROBING], created_at__lt=cutoff)
    assemble = Rendition.objects.filter(state=RenditionState.ASSEMBLING, job__state=JobState.ENCODING)
    return [
        *((E.INGEST, pk, f"ingest-{pk}") for pk in ingest.values_list("pk", flat=True)),
        *((E.ASSEMBLE_RENDITION, pk, f"assemble-{pk}") for pk in assemble.values_list("pk", flat=True)),
        *((E.PACKAGE_JOB, pk, f"package-{pk}")
          for pk in EncodeJob.objects.filter(state=JobState.PACKAGING).values_list("pk", flat=True)),
        *((E.PUBLISH_JOB, pk, f"publish-{pk}")
          for pk in EncodeJob.objects.filter(state=JobState.PUBLISHING).values_list("pk", flat=True)),
    ]


def reconcile_steps(*, conn=None) -> list[str]:
    """Re-enqueue a lost ingest, assemble, package or publish step."""
    conn = conn or django_rq.get_connection("default")
    cutoff = timezone.now() - timedelta(seconds=settings.REELFLOW_RECONCILE_GRACE_SECONDS)
    redone = []
    for entry, arg, rq_id in _waiting_steps(cutoff):
        if not _step_alive(conn, rq_id):
            queues.enqueue(entry, arg, rq_id=rq_id)
            redone.append(rq_id)
    if redone:
        logger.warning("reconcile re-enqueued steps: %s", redone)
    return redone


def reconcile_all() -> dict:
    return {"units": reconcile_units(), "steps": reconcile_steps()}
