"""The probe step: what a source is, and whether Reelflow can make something of it. Size
limits first (an empty or oversized object never reaches ffprobe), then ffprobe through a
presigned URL, the source's limits, and the chunk plan. Every refusal is a
``PermanentMediaError`` whose reason a publisher can act on.
"""

from django.conf import settings

from pipeline import chunking, ffmpeg, media
from pipeline.models import EncodeJob
from pipeline.steps.common import mib, source_url


class StoredInfo:
    """A MediaInfo with ``as_dict()`` for ``services.planning.job_plan`` (which stores it on
    the asset and knows no ffmpeg types)."""

    def __init__(self, info: ffmpeg.MediaInfo) -> None:
        self._info = info

    def __getattr__(self, name):
        return getattr(self._info, name)

    def as_dict(self) -> dict:
        return media.media_info_json(self._info)


def _size_check(size: int | None) -> None:
    if size == 0:
        # S3 answers a ranged read of an empty object with 416, which reads as a glitch.
        raise ffmpeg.PermanentMediaError("not a media file: the file is empty (0 bytes); upload it again")
    limit = settings.REELFLOW_MAX_UPLOAD_BYTES
    if size and size > limit:
        # The studio refuses such uploads up front; a file put straight into the bucket
        # (aws s3 cp, the SQS path) is only seen here.
        raise ffmpeg.PermanentMediaError(f"the file is {mib(size)}, over the {mib(limit)} upload limit")


def source_probe(job: EncodeJob) -> tuple[StoredInfo, list[chunking.Chunk]]:
    """Probe the job's source and plan its chunks; raises PermanentMediaError for a source that
    cannot be encoded, with the reason."""
    _size_check(job.asset.source_size)
    info = ffmpeg.probe(source_url(job.asset))
    ffmpeg.validate_source(
        info, max_duration_s=settings.REELFLOW_MAX_DURATION_SECONDS, max_pixels=settings.REELFLOW_MAX_PIXELS
    )
    fps = media.planned_fps(info.video)
    try:
        chunks = chunking.plan_chunks(
            duration_s=media.plan_duration(info, fps), fps=fps,
            chunk_seconds=job.chunk_seconds, segment_seconds=job.segment_seconds,
        )  # fmt: skip
    except ValueError as exc:
        raise ffmpeg.PermanentMediaError(f"cannot plan this source: {exc}") from exc
    return StoredInfo(info), chunks
