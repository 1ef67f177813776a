"""What the probe found, as stored on the asset (``Asset.probe``) and read back: the source's
video facts, the planned frame rate and duration, and each rung's and chunk's encoder settings
from their stored rows. A leaf: services, rules, quality and the steps all read it.
"""

from dataclasses import asdict
from fractions import Fraction

from django.conf import settings

from pipeline import chunking, ffmpeg

# Asset.probe's key naming a copy of the source in the media bucket to read instead of the
# source (pipeline.steps.probe.decoded_source: a source whose timestamps had to be rebased).
READ_FROM = "read_from"


def source_location(asset) -> tuple[str, str]:
    """(bucket, key) the pipeline reads the asset's video from."""
    read_from = (asset.probe or {}).get(READ_FROM)
    if read_from:
        return settings.S3_BUCKET_MEDIA, read_from
    return asset.source_bucket, asset.source_key


def _jsonable(value):
    if isinstance(value, Fraction):
        return f"{value.numerator}/{value.denominator}"
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items() if k != "raw"}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def media_info_json(info: ffmpeg.MediaInfo) -> dict:
    return _jsonable(asdict(info))


def video_info_from_json(data: dict) -> ffmpeg.VideoInfo:
    fields = dict(data)
    for key in ("fps", "avg_fps", "sar"):
        fields[key] = Fraction(fields[key])
    return ffmpeg.VideoInfo(**fields)


def video_rendition(params: dict) -> ffmpeg.VideoRendition:
    """The encoder settings of a video rung, from its stored params."""
    return ffmpeg.VideoRendition(
        name=params["name"], codec=params["codec"], height=params["height"], crf=params.get("crf"),
        bitrate_kbps=params.get("bitrate_kbps"), maxrate_kbps=params.get("maxrate_kbps"),
        bufsize_kbps=params.get("bufsize_kbps"), preset=params.get("preset") or None,
    )


def audio_rendition(params: dict) -> ffmpeg.AudioRendition:
    """The encoder settings of an audio rendition, from its stored params."""
    return ffmpeg.AudioRendition(
        name=params["name"], codec=params["codec"], bitrate_kbps=params["bitrate_kbps"], channels=params["channels"]
    )


def chunk_plan(row) -> chunking.Chunk:
    """The planned range of a chunk row (pipeline.models.Chunk)."""
    return chunking.Chunk(
        index=row.index, start_s=row.start_s, end_s=row.end_s, start_frame=row.start_frame, frame_count=row.frame_count
    )


def planned_fps(video: ffmpeg.VideoInfo) -> Fraction:
    return chunking.planning_fps(fps=video.fps, avg_fps=video.avg_fps, vfr=video.vfr)


def plan_duration(info: ffmpeg.MediaInfo, fps: Fraction) -> float:
    """The duration the chunk plan covers: the video stream's, exact from its frame count
    when the source is constant-rate and indexed."""
    video = info.video
    if video.frame_count and not video.vfr:
        return float(Fraction(video.frame_count) / fps)
    return video.duration_s or info.duration


