"""RQ entry points of quality control: thin, as in ``pipeline.jobs``. A measurement's failure
marks only its tasks: it never fails the encode job."""

from rq import get_current_job

from pipeline.jobs import failure_reason, is_final
from pipeline.quality import services, work


def _ids(task_ids: int | list[int]) -> list[int]:
    """One RQ job measures a batch of tasks (one chunk, several renditions); a single id is a
    batch of one."""
    return [task_ids] if isinstance(task_ids, int) else list(task_ids)


def measure_quality(task_ids: int | list[int]) -> None:
    current = get_current_job()
    work.task_run(
        task_ids=_ids(task_ids),
        worker=(current.worker_name if current else "") or "",
        rq_id=current.id if current else "",
    )


def quality_reconcile() -> None:
    services.reconcile_tasks()


def measure_failed(job, connection, exc_type, value, tb) -> None:
    for task_id in _ids(job.args[0]):
        services.task_fail(
            task_id=task_id,
            reason=failure_reason(exc_type, value),
            log_tail=getattr(value, "stderr_tail", "") or "",
            permanent=is_final(job),
            rq_id=job.id,
        )
