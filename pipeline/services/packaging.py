"""Renditions ready and jobs packaged: the last unit's assemble makes a rendition READY (and
playable on its own), the last ready rendition sends the job to packaging, and the written
package goes to the publish rules.
"""

from django.conf import settings
from django.db import transaction

from core import s3
from pipeline import progress, queues
from pipeline.models import EncodeJob, JobState, Rendition, RenditionKind, RenditionState
from pipeline.quality import services as quality_services
from pipeline.services.common import job_event, job_state_message
from pipeline.services.publishing import job_published, job_rules_check, published_prefix

PLAYABLE_URL_SECONDS = 24 * 3600


@transaction.atomic
def rendition_ready(*, rendition_id: int, output_key: str, stats: dict, preview_key: str = "") -> Rendition:
    """ASSEMBLING -> READY; the last ready rendition moves the job to PACKAGING exactly once.

    A ready rendition is playable on its own (a progressive MP4): a `rendition.playable`
    event says so at once, with a URL valid for a day, before the job as a whole is done.
    ``preview_key``: the assemble step also wrote a preview (HLS over the renditions ready so
    far, ``steps/preview.py``): the job's page shows it, and the event says where to watch."""
    rendition = Rendition.objects.select_for_update().get(pk=rendition_id)
    if rendition.state == RenditionState.READY:
        return rendition
    rendition.state = RenditionState.READY
    rendition.output_key = output_key
    for field in ("frame_count", "duration_s", "bitrate_kbps", "codecs"):
        if field in stats:
            setattr(rendition, field, stats[field])
    rendition.save(update_fields=["state", "output_key", "frame_count", "duration_s", "bitrate_kbps", "codecs"])
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=rendition.job_id)
    job_event(job, "rendition.ready", rendition=rendition.name, **stats)
    preview = bool(preview_key) and job.state == JobState.ENCODING
    if preview:
        job.preview_key = preview_key
        job.save(update_fields=["preview_key"])
    job_event(
        job, "rendition.playable", rendition=rendition.name, kind=rendition.kind, height=rendition.height,
        width=rendition.width, bitrate_kbps=rendition.bitrate_kbps, duration_s=rendition.duration_s,
        url=s3.presign_get(settings.S3_BUCKET_MEDIA, output_key, expires=PLAYABLE_URL_SECONDS),
        url_expires_s=PLAYABLE_URL_SECONDS, preview=preview,
        watch_url=f"{settings.SITE_URL}/studio/assets/{job.asset_id}/" if job.preview_key else None,
    )
    progress.publish_on_commit(job.pk, {"kind": "rendition", "rendition": rendition.name, "rendition_id": rendition.pk,
                                        "state": rendition.state, "preview": bool(job.preview_key)})
    if rendition.kind == RenditionKind.VIDEO:
        quality_services.rendition_ready_plan(rendition)
    pending = Rendition.objects.filter(job=job).exclude(state=RenditionState.READY).exists()
    if not pending and job.state == JobState.ENCODING:
        job.state = JobState.PACKAGING
        job.save(update_fields=["state"])
        job_event(job, "job.packaging")
        job_state_message(job)
        queues.enqueue_on_commit(queues.Entry.PACKAGE_JOB, job.pk, rq_id=f"package-{job.pk}")
    return rendition


@transaction.atomic
def job_packaged(*, job_id: int, master_key: str, dash_key: str, poster_key: str, in_place: bool = False) -> EncodeJob:
    """PACKAGING -> CHECKING: the package is written; the publish rules decide what follows.

    ``in_place``: the rules passed before packaging (:func:`job_rules_decide_early`) and the
    package was written to the published prefix: PACKAGING -> PUBLISHED."""
    job = EncodeJob.objects.select_for_update().select_related("asset__publisher").get(pk=job_id)
    if job.state != JobState.PACKAGING:
        return job
    if in_place:
        job_event(job, "job.packaged", master=master_key, dash=dash_key)
        job_published(job, master_key=master_key, dash_key=dash_key, poster_key=poster_key,
                       prefix=published_prefix(job))
        return job
    job.state = JobState.CHECKING
    job.master_playlist_key = master_key
    job.dash_manifest_key = dash_key
    job.save(update_fields=["state", "master_playlist_key", "dash_manifest_key"])
    asset = job.asset
    asset.poster_key = poster_key
    asset.save(update_fields=["poster_key"])
    job_event(job, "job.packaged", master=master_key, dash=dash_key)
    job_state_message(job)
    job_rules_check(job)
    return job


