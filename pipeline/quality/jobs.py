"""RQ entry points of quality control: thin, as in ``pipeline.jobs``. A measurement's failure
marks only its task: it never fails the encode job."""

from rq import get_current_job

from pipeline.jobs import failure_reason, is_final
from pipeline.quality import services, work


def measure_quality(task_id: int) -> None:
    current = get_current_job()
    work.task_run(
        task_id=task_id, worker=(current.worker_name if current else "") or "", rq_id=current.id if current else ""
    )


def quality_reconcile() -> None:
    services.reconcile_tasks()


def measure_failed(job, connection, exc_type, value, tb) -> None:
    services.task_fail(
        task_id=job.args[0],
        reason=failure_reason(exc_type, value),
        log_tail=getattr(value, "stderr_tail", "") or "",
        permanent=is_final(job),
        rq_id=job.id,
    )
