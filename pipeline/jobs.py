"""RQ entry points: thin. Each takes ids and calls one step; its queue, retries and failure
callback are set where it is enqueued (``pipeline.queues.ENTRIES``).

Transient errors are raised so RQ retries them with backoff; permanent ones are recorded by the
steps and end the job at once. The failure callbacks run on every failed attempt (and when RQ
finds a job abandoned by a dead worker); they record the final failure only when no retry is
left.
"""

from rq import get_current_job

from pipeline import events, failures
from pipeline import reconcile as pipeline_reconcile
from pipeline.models import Rendition
from pipeline.services.jobs import job_fail
from pipeline.services.units import unit_fail
from pipeline.steps import assembly, packaging, publishing, units
from pipeline.steps import ingest as ingest_step


def _current() -> tuple[str, str]:
    """(worker name, RQ id) of the job running now, or empty strings outside a worker."""
    current = get_current_job()
    return ((current.worker_name or "") if current else ""), (current.id if current else "")


def ingest(job_id: int) -> None:
    ingest_step.job_ingest_run(job_id=job_id)


def encode_unit(unit_id: int) -> None:
    worker, rq_id = _current()
    try:
        units.unit_run(unit_id=unit_id, worker=worker, rq_id=rq_id)
    except Exception as exc:  # noqa: BLE001 - classified: only a transient failure is retried
        failure = failures.classify(exc)
        if failure.retried:
            raise
        unit_fail(
            unit_id=unit_id, reason=failure.reason, log_tail=failure.detail, permanent=True, rq_id=rq_id,
            failure_class=failure.kind,
        )


def assemble_rendition(rendition_id: int) -> None:
    assembly.rendition_assemble_run(rendition_id=rendition_id)


def package_job(job_id: int) -> None:
    packaging.job_package_run(job_id=job_id)


def publish_job(job_id: int) -> None:
    publishing.job_publish_run(job_id=job_id)


def reconcile() -> None:
    pipeline_reconcile.reconcile_all()


def ingest_sweep() -> None:
    events.ingest_sweep()


# --- Failure callbacks (named in pipeline.queues.ENTRIES) ------------------------------------


def is_final(job) -> bool:
    return not job.retries_left


def failure_reason(exc_type, value) -> str:
    """The readable reason of a failed attempt (``pipeline.failures``), never a raw exception."""
    if isinstance(value, BaseException):
        return failures.classify(value).reason
    return getattr(value, "reason", None) or exc_type.__name__


def _detail(value) -> str:
    return failures.classify(value).detail if isinstance(value, BaseException) else ""


def job_failed(job, connection, exc_type, value, tb) -> None:
    if is_final(job):
        job_fail(
            job_id=job.args[0], reason=f"gave up after retries: {failure_reason(exc_type, value)}",
            failure_class="transient", detail=_detail(value),
        )


def assemble_failed(job, connection, exc_type, value, tb) -> None:
    if is_final(job):
        job_id = Rendition.objects.values_list("job_id", flat=True).get(pk=job.args[0])
        job_fail(
            job_id=job_id, reason=f"assembling gave up after retries: {failure_reason(exc_type, value)}",
            failure_class="transient", detail=_detail(value),
        )


def unit_failed(job, connection, exc_type, value, tb) -> None:
    unit_fail(
        unit_id=job.args[0],
        reason=failure_reason(exc_type, value),
        log_tail=getattr(value, "stderr_tail", "") or "",
        permanent=is_final(job),
        rq_id=job.id,
        failure_class="transient",
    )
