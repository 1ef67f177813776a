"""What every worker step shares: where its temp files go, presigned reads for ffmpeg, uploads
to the media bucket, its liveness while it runs, and how a permanent error ends its job.
Bytes only move through S3; nothing here assumes a disk shared with any other process.
"""

import functools
import logging
import mimetypes
import os
from pathlib import Path

from botocore.exceptions import ClientError
from django.conf import settings

from core import s3
from pipeline import failures, ffmpeg, media, progress
from pipeline.models import Asset, Rendition

logger = logging.getLogger(__name__)

SOURCE_URL_SECONDS = 12 * 3600

mimetypes.add_type("application/vnd.apple.mpegurl", ".m3u8")
mimetypes.add_type("application/dash+xml", ".mpd")
mimetypes.add_type("video/iso.segment", ".m4s")
mimetypes.add_type("text/vtt", ".vtt")


def work_dir() -> str | None:
    return os.environ.get("REELFLOW_WORK_DIR") or None


def source_url(asset: Asset) -> str:
    """A presigned read of what the pipeline decodes: the upload, or its rebased copy."""
    bucket, key = media.source_location(asset)
    return s3.presign_get(bucket, key, expires=SOURCE_URL_SECONDS, public=False)


def upload_url(asset: Asset) -> str:
    """A presigned read of the upload itself (the probe always starts from it)."""
    return s3.presign_get(asset.source_bucket, asset.source_key, expires=SOURCE_URL_SECONDS, public=False)


def media_url(key: str) -> str:
    return s3.presign_get(settings.S3_BUCKET_MEDIA, key, expires=SOURCE_URL_SECONDS, public=False)


# Below this size one PUT beats upload_file's transfer manager (its thread pool alone costs
# ~30 ms to set up, per unit); above it, parallel multipart parts win.
SINGLE_PUT_MAX_BYTES = 32 * 1024 * 1024


# Parallel PUTs (package upload) and server-side copies (publish) of a package's ~100 small
# files. 16 instead of 8 was measured and changed nothing on a 2-core machine (364-372 against
# 385 ms for 109 files): the S3 server, not the round trips, bounds it there.
PACKAGE_TRANSFERS = 8


def layout_key(rendition_key: str) -> str:
    """Beside each stored rendition: what its package needs of it (pipeline.manifests)."""
    return rendition_key.removesuffix(".mp4") + ".layout.json"


def upload(path: Path, key: str, *, metadata: dict | None = None) -> int:
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    meta = {k: str(v) for k, v in (metadata or {}).items()}
    size = path.stat().st_size
    if size <= SINGLE_PUT_MAX_BYTES:
        with path.open("rb") as body:
            s3.client().put_object(
                Bucket=settings.S3_BUCKET_MEDIA, Key=key, Body=body, ContentType=content_type, Metadata=meta
            )
    else:
        s3.client().upload_file(
            str(path), settings.S3_BUCKET_MEDIA, key, ExtraArgs={"ContentType": content_type, "Metadata": meta}
        )
    return size


def alive_while_running(rq_id_for):
    """Keep the step's liveness key fresh while it runs, so the reconciler can tell a long
    step from a lost one (see progress.step_heartbeat). Keyed by the step's RQ id."""

    def decorate(step):
        @functools.wraps(step)
        def wrapped(**kwargs):
            with progress.step_heartbeat(rq_id_for(kwargs)):
                return step(**kwargs)

        return wrapped

    return decorate


def failures_classified(step):
    """Every failure of a step is classified (``pipeline.failures``): a permanent one (bad
    input) or a defect (our bug) ends the job at once with a readable reason, and only a
    transient one propagates to RQ's retry."""

    @functools.wraps(step)
    def wrapped(**kwargs):
        try:
            return step(**kwargs)
        except ffmpeg.MediaCancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - classified below; transient ones are re-raised
            job_id = kwargs.get("job_id") or Rendition.objects.values_list("job_id", flat=True).get(
                pk=kwargs["rendition_id"]
            )
            if failures.step_failed(exc, step=step.__name__, job_id=job_id).retried:
                raise
            return None

    return wrapped


def mib(size: int) -> str:
    return f"{size / 1024**2:,.1f} MiB"


def stored(key: str) -> bool:
    try:
        s3.client().head_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def keys_under(prefix: str) -> list[str]:
    client = s3.client()
    return [
        obj["Key"]
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=settings.S3_BUCKET_MEDIA, Prefix=f"{prefix}/")
        for obj in page.get("Contents", [])
    ]


def delete_prefix(prefix: str) -> None:
    keys = keys_under(prefix)
    for start in range(0, len(keys), 1000):
        s3.client().delete_objects(
            Bucket=settings.S3_BUCKET_MEDIA, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]}
        )


