"""The ingest step: QUEUED -> PROBING -> ENCODING. Probe and plan the source (``probe``), then
hand the plan to ``services.planning.job_plan``, which creates the units and queues them."""

from pipeline import ffmpeg
from pipeline.services import jobs as job_services
from pipeline.services.planning import job_plan
from pipeline.steps.common import alive_while_running, failures_classified
from pipeline.steps.probe import source_probe


@alive_while_running(lambda kwargs: f"ingest-{kwargs['job_id']}")
@failures_classified
def job_ingest_run(*, job_id: int) -> None:
    job = job_services.job_probe_start(job_id=job_id)
    if job is None:
        return
    try:
        info, chunks, plan = source_probe(job)
    except ValueError as exc:  # probe facts that no plan can be made from
        raise ffmpeg.PermanentMediaError(f"cannot plan this source: {exc}") from exc
    job_plan(job_id=job_id, info=info, chunks=chunks, plan=plan)
