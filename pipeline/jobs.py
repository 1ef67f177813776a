"""RQ entry points: thin. Each takes ids, calls one function, and owns its retry policy.

Transient errors are raised so RQ retries them with backoff; permanent ones are recorded by the
work functions and end the job at once. `on_failure` callbacks run on every failed attempt
(and when RQ finds a job abandoned by a dead worker); they record the final failure only when
no retry is left.
"""

import logging

from rq import Callback, Retry, get_current_job

from pipeline import encoding, quality, quality_work, services

logger = logging.getLogger(__name__)

_BACKOFF = [5, 30, 120]


def ingest(job_id: int) -> None:
    encoding.job_ingest_run(job_id=job_id)


def encode_unit(unit_id: int) -> None:
    current = get_current_job()
    encoding.unit_run(unit_id=unit_id, worker=(current.worker_name if current else "") or "", rq_job_id=current.id if current else "")


def assemble_rendition(rendition_id: int) -> None:
    encoding.rendition_assemble_run(rendition_id=rendition_id)


def package_job(job_id: int) -> None:
    encoding.job_package_run(job_id=job_id)


def publish_job(job_id: int) -> None:
    encoding.job_promote_run(job_id=job_id)


def measure_quality(task_id: int) -> None:
    current = get_current_job()
    quality_work.task_run(
        task_id=task_id, worker=(current.worker_name if current else "") or "", rq_job_id=current.id if current else ""
    )


def quality_reconcile() -> None:
    quality.reconcile_tasks()


def reconcile() -> None:
    from pipeline.reconcile import reconcile_all

    reconcile_all()


def ingest_sweep() -> None:
    from pipeline.events import ingest_sweep as sweep

    sweep()


def _final(job) -> bool:
    return not job.retries_left


def _reason(exc_type, value) -> str:
    return getattr(value, "reason", None) or f"{exc_type.__name__}: {value}"[:500]


def _job_failed(job, connection, exc_type, value, tb) -> None:
    if _final(job):
        services.job_fail(job_id=job.args[0], reason=f"gave up after retries: {_reason(exc_type, value)}")


def _assemble_failed(job, connection, exc_type, value, tb) -> None:
    if _final(job):
        from pipeline.models import Rendition

        job_id = Rendition.objects.values_list("job_id", flat=True).get(pk=job.args[0])
        services.job_fail(job_id=job_id, reason=f"assembling gave up after retries: {_reason(exc_type, value)}")


def _unit_failed(job, connection, exc_type, value, tb) -> None:
    unit_id = job.args[0]
    services.unit_fail(
        unit_id=unit_id,
        reason=_reason(exc_type, value),
        log_tail=getattr(value, "stderr_tail", "") or "",
        permanent=_final(job),
        rq_job_id=job.id,
    )


def _quality_failed(job, connection, exc_type, value, tb) -> None:
    # Marks the measurement only: a quality failure never fails the encode job.
    quality.task_fail(
        task_id=job.args[0],
        reason=_reason(exc_type, value),
        log_tail=getattr(value, "stderr_tail", "") or "",
        permanent=_final(job),
        rq_job_id=job.id,
    )


ENQUEUE_OPTIONS = {
    "ingest": {"retry": Retry(max=3, interval=_BACKOFF), "on_failure": Callback(_job_failed), "job_timeout": 900},
    "encode_unit": {
        "retry": Retry(max=3, interval=_BACKOFF),
        "on_failure": Callback(_unit_failed),
        "job_timeout": 6 * 3600,
        "result_ttl": 3600,
    },
    "assemble_rendition": {
        "retry": Retry(max=3, interval=_BACKOFF),
        "on_failure": Callback(_assemble_failed),
        "job_timeout": 6 * 3600,
    },
    "package_job": {"retry": Retry(max=3, interval=_BACKOFF), "on_failure": Callback(_job_failed), "job_timeout": 6 * 3600},
    "publish_job": {"retry": Retry(max=3, interval=_BACKOFF), "on_failure": Callback(_job_failed), "job_timeout": 3600},
    "measure_quality": {
        "retry": Retry(max=3, interval=_BACKOFF),
        "on_failure": Callback(_quality_failed),
        "job_timeout": 2 * 3600,
        "result_ttl": 3600,
    },
}
