"""The RQ job class every worker runs (settings.RQ["JOB_CLASS"]): each job's lines carry its
RQ id, the encode job and unit it works on, and the trace id of the upload it serves."""

import logging

from rq.job import Job

from core import logs

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


class TracedJob(Job):
    def perform(self):
        with logs.scope(rq_id=self.id):
            try:
                fields = _trace_fields(self.func_name, self.args)
            except Exception as exc:  # noqa: BLE001 - a log context never stops the job itself
                logger.warning("no trace context for %s: %s", self.id, exc)
                fields = {}
            with logs.scope(**fields):
                return super().perform()
