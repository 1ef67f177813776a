"""RQ entry points on the "backup" queue: thin. Each takes ids and calls one service.

Runs and restores are idempotent by state (phases, cursors, task and item states), so a retry
after a transient error or a lost worker continues where the last attempt stopped. Job ids
are deterministic, so the scheduler never queues the same run twice.
"""

import logging

import django_rq
from rq import Retry
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.worker import Worker

from backups.services import backtrack, drills, intake, restore, runs
from backups.services.copying import run_copy

logger = logging.getLogger(__name__)

QUEUE = "backup"
_RETRY = Retry(max=3, interval=[10, 60, 300])
RUN_TIMEOUT = 24 * 3600


def _queue():
    return django_rq.get_queue(QUEUE)


def run_job_id(run_id: int) -> str:
    return f"backup-run-{run_id}"


def run_execute(run_id: int) -> None:
    runs.run_execute(run_id=run_id, on_copy_start=lambda: _helpers_enqueue(run_id))


def _helpers_enqueue(run_id: int) -> None:
    from django.conf import settings

    for n in range(settings.BACKUP_COPY_HELPERS):
        _queue().enqueue(run_copy_help, run_id, job_id=f"{run_job_id(run_id)}-helper-{n}", job_timeout=RUN_TIMEOUT)


def run_copy_help(run_id: int) -> None:
    """Extra hands for a run's copy phase (on another worker or machine)."""
    from backups.models import BackupRun, RunPhase
    from backups.services.common import process_label

    run = BackupRun.objects.select_related("policy").get(pk=run_id)
    if run.finished_at is None and run.phase == RunPhase.COPY:
        run_copy(run=run, owner=f"{process_label()}:helper", coordinator=False)


def restore_execute(restore_id: int) -> None:
    restore.restore_execute(restore_id=restore_id)


def failure_retry(failure_id: int) -> None:
    backtrack.failure_retry(failure_id=failure_id)


def drill_execute(drill_id: int) -> None:
    drills.drill_execute(drill_id=drill_id)


def tick() -> None:
    """The scheduler's beat: follow storage events, start due and event runs, resume stalled
    ones, queue due restore drills."""
    intake.events_follow()
    runs.event_runs_start()
    runs.scheduled_runs_start()
    runs.runs_stalled_resume()
    drills.drills_due_start()


def run_job_pending(run_id: int) -> bool:
    """Waiting in the queue, or started by a worker that is still alive."""
    connection = _queue().connection
    try:
        job = Job.fetch(run_job_id(run_id), connection=connection)
    except NoSuchJobError:
        return False
    status = job.get_status(refresh=False)
    if status == "started":
        return job.worker_name in {w.name for w in Worker.all(connection=connection)}
    return status in ("queued", "deferred", "scheduled")


def run_enqueue(run_id: int) -> None:
    if run_job_pending(run_id):
        return
    _queue().enqueue(run_execute, run_id, job_id=run_job_id(run_id), retry=_RETRY, job_timeout=RUN_TIMEOUT)


def restore_enqueue(restore_id: int) -> None:
    _queue().enqueue(restore_execute, restore_id, job_id=f"backup-restore-{restore_id}", retry=_RETRY, job_timeout=RUN_TIMEOUT)


def failure_retry_enqueue(failure_id: int) -> None:
    _queue().enqueue(failure_retry, failure_id, retry=Retry(max=2, interval=[10, 60]), job_timeout=3600)


def drill_enqueue(drill_id: int) -> None:
    _queue().enqueue(drill_execute, drill_id, job_id=f"backup-drill-{drill_id}", job_timeout=RUN_TIMEOUT)
