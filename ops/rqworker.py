"""The RQ worker class every `rqworker` runs by default (settings.RQ["WORKER_CLASS"]): security's
registering worker, with a log context around each job: its lines (RQ's own about the job
included) carry its RQ id, the encode job and unit it works on, and the trace id of the upload
it serves.

A worker subclass rather than RQ's JOB_CLASS setting: with a job class of our own, RQ's queues
and registries stop recognising the plain `Job` objects that `Job.fetch` returns (they check
`isinstance(job, queue.job_class)`) and take them for ids."""

import logging

from django.db import close_old_connections

from core import logs
from security.worker import RegisteringWorker

logger = logging.getLogger(__name__)

# Which id a pipeline entry's one argument is.
_ARGUMENT_KIND = {
    "pipeline.jobs.ingest": "job",
    "pipeline.jobs.package_job": "job",
    "pipeline.jobs.publish_job": "job",
    "pipeline.jobs.encode_unit": "unit",
    "pipeline.jobs.assemble_rendition": "rendition",
    "pipeline.quality.jobs.measure_quality": "quality_task",
}


def _trace_fields(func_name: str, args: tuple) -> dict:
    """job_id, unit_id and trace_id for a pipeline step (one indexed query); {} for others."""
    kind = _ARGUMENT_KIND.get(func_name)
    if kind is None or not args:
        return {}
    from pipeline.models import EncodeJob, QualityTask, Rendition, Unit

    arg = args[0][0] if isinstance(args[0], list | tuple) and args[0] else args[0]
    fields: dict = {}
    if kind == "unit":
        fields["unit_id"] = arg
        job_id = Unit.objects.filter(pk=arg).values_list("job_id", flat=True).first()
    elif kind == "rendition":
        job_id = Rendition.objects.filter(pk=arg).values_list("job_id", flat=True).first()
    elif kind == "quality_task":
        job_id = QualityTask.objects.filter(pk=arg).values_list("job_id", flat=True).first()
    else:
        job_id = arg
    source = (
        EncodeJob.objects.filter(pk=job_id).values_list("asset__source_bucket", "asset__source_key").first()
    )
    if source is not None:
        fields.update(job_id=job_id, trace_id=logs.trace_id_for(*source))
    return fields


class TracedWorker(RegisteringWorker):
    def perform_job(self, job, queue) -> bool:
        with logs.scope(fresh=True, rq_id=job.id):
            try:
                close_old_connections()  # what the parent does first; our query comes before it
                fields = _trace_fields(job.func_name, job.args)
            except Exception as exc:  # noqa: BLE001 - a log context never stops the job itself
                logger.warning("no trace context for %s: %s", job.id, exc)
                fields = {}
            with logs.scope(**fields):
                return super().perform_job(job, queue)
