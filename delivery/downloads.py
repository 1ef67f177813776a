"""MP4 downloads: for each video rung the publisher made downloadable, one progressive MP4 with
the job's audio muxed in (a stream copy, seconds of work), written once beside the published
package and handed out as a short-lived presigned S3 URL that saves it under the title.

The file's key is deterministic, so preparing is idempotent: a prepared rung is a HEAD away.
"""

import logging
import tempfile
import urllib.parse
from pathlib import Path

from botocore.exceptions import ClientError
from django.conf import settings
from django.utils.text import slugify

from core import s3
from pipeline import ffmpeg, packaging_cmds, queues
from pipeline import selectors as pipeline_selectors
from pipeline.models import EncodeJob, Rendition, RenditionKind, RenditionState

logger = logging.getLogger(__name__)

_URL_SECONDS = 300


def download_key(job: EncodeJob, rung: str) -> str:
    return f"{job.master_playlist_key.rsplit('/', 1)[0]}/downloads/{rung}.mp4"


def download_ready(job: EncodeJob, rung: str) -> bool:
    try:
        s3.client().head_object(Bucket=settings.S3_BUCKET_MEDIA, Key=download_key(job, rung))
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def downloads_request(*, job: EncodeJob, rungs: list[str]) -> None:
    """Queue the preparation of each rung's MP4 (once the current transaction commits)."""
    for rendition in Rendition.objects.filter(job=job, name__in=rungs, kind=RenditionKind.VIDEO):
        queues.enqueue_on_commit(queues.Entry.DOWNLOAD_PREPARE, rendition.pk, rq_id=f"download-{rendition.pk}")


def download_prepare_run(*, rendition_id: int) -> str | None:
    """Write the rung's MP4 if it is not there yet; returns its key (None: nothing to do,
    the rendition is not a ready video rendition of a published job)."""
    rendition = Rendition.objects.select_related("job", "job__asset").filter(pk=rendition_id).first()
    if rendition is None or rendition.kind != RenditionKind.VIDEO or rendition.state != RenditionState.READY:
        return None
    job = rendition.job
    if pipeline_selectors.job_published_latest(asset=job.asset) != job:
        return None
    key = download_key(job, rendition.name)
    if download_ready(job, rendition.name):
        return key
    audio = (
        Rendition.objects.filter(job=job, kind=RenditionKind.AUDIO, state=RenditionState.READY)
        .exclude(output_key="").order_by("-bitrate_kbps", "name").first()
    )  # fmt: skip
    media = settings.S3_BUCKET_MEDIA
    video_url = s3.presign_get(media, rendition.output_key, expires=3600, public=False)
    audio_url = s3.presign_get(media, audio.output_key, expires=3600, public=False) if audio else None
    with tempfile.TemporaryDirectory(prefix="reelflow-download-") as folder:
        out = Path(folder) / f"{rendition.name}.mp4"
        ffmpeg.run_ffmpeg(packaging_cmds.download_mux_args(video=video_url, audio=audio_url, output=out), timeout=3000)
        s3.client().upload_file(str(out), media, key, ExtraArgs={"ContentType": "video/mp4"})
    logger.info("download %s of job %s written to %s", rendition.name, job.pk, key)
    return key


def download_url(*, job: EncodeJob, rung: str, title: str) -> str:
    """A presigned GET (minutes) that saves the MP4 as `<title>-<rung>.mp4`."""
    filename = f"{slugify(title) or 'video'}-{rung}.mp4"
    disposition = f"attachment; filename=\"{filename}\"; filename*=UTF-8''{urllib.parse.quote(filename)}"
    return s3.client(public=True).generate_presigned_url(
        "get_object",
        Params={"Bucket": settings.S3_BUCKET_MEDIA, "Key": download_key(job, rung), "ResponseContentDisposition": disposition},
        ExpiresIn=_URL_SECONDS,
    )
