"""Which sources the pipeline refuses, with a reason the publisher can act on."""

from __future__ import annotations

from pipeline.ffmpeg.errors import PermanentMediaError
from pipeline.ffmpeg.mediainfo import MediaInfo
from pipeline.ffmpeg.versions import _decodable_codecs, ffmpeg_binary

_IMAGE_FORMATS = frozenset(
    {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe",
     "jpegxl_pipe", "svg_pipe", "qoi_pipe", "pam_pipe", "ppm_pipe", "dpx_pipe", "exr_pipe"}
)  # fmt: skip
_IMAGE_CODECS = frozenset(
    {"png", "mjpeg", "jpegls", "bmp", "webp", "tiff", "gif", "jpeg2000", "jpegxl", "qoi"}
)
# Demuxers that accept plain text (ANSI art, subtitles): a .txt upload is not a video.
_TEXT_FORMATS = frozenset({"tty", "srt", "webvtt", "ass", "microdvd", "subviewer", "jacosub"})
_DEFAULT_MAX_PIXELS = 8192 * 4320
# Smaller pictures cannot be scaled to an even-sized rendition that anyone could watch.
MIN_DIMENSION = 16


def _human_duration(seconds: float) -> str:
    """6 h, 1.5 h, 2 min 5 s, 40 s: a limit and a length a publisher can compare."""
    if seconds >= 3600:
        return f"{seconds / 3600:.1f}".rstrip("0").rstrip(".") + " h"
    if seconds >= 60:
        minutes, rest = divmod(round(seconds), 60)
        return f"{minutes} min" + (f" {rest} s" if rest else "")
    return f"{seconds:.1f}".rstrip("0").rstrip(".") + " s"


def validate_source(
    info: MediaInfo, *, max_duration_s: float = 6 * 3600, max_pixels: int = _DEFAULT_MAX_PIXELS
) -> None:
    """Refuse sources the pipeline cannot turn into a video, with a reason for the publisher.

    Raises PermanentMediaError; returns None for an acceptable source. The order matters:
    an image has no duration, and a truncated file's other numbers cannot be trusted.
    """
    video = info.video
    if video is None and not info.audio:
        raise PermanentMediaError("not a media file: it contains no audio or video streams")
    if info.container in _TEXT_FORMATS:
        raise PermanentMediaError("not a media file: it is text")
    if info.container in _IMAGE_FORMATS or (
        video is not None
        and (video.frame_count == 1 or (video.codec in _IMAGE_CODECS and not video.frame_count))
    ):
        raise PermanentMediaError("image, not a video: it has a single frame")
    if info.truncated:
        raise PermanentMediaError(
            "file is truncated: it holds less data than its index describes; upload it again"
        )
    duration = info.duration or (video.duration_s if video is not None else None)
    if duration is None and video is not None:
        raise PermanentMediaError(
            "duration unknown: the file has no timestamps or index (a bare stream?); "
            "put it in an MP4 or MKV container and upload it again"
        )
    if not duration or duration <= 0:
        raise PermanentMediaError("zero duration: the file contains no playable media")
    if video is None:
        raise PermanentMediaError("no video stream: the file is audio only")
    if video.codec in {"none", ""} or video.codec not in _decodable_codecs(ffmpeg_binary()):
        # ffprobe names no codec it cannot identify; the container's four-character tag
        # (e.g. 'zzzz') is then the best clue for the publisher.
        tag = next(
            (s.get("codec_tag_string") for s in info.raw.get("streams", []) if s.get("index") == video.index), None
        )
        name = video.codec if video.codec not in {"none", ""} else (tag or "unknown")
        raise PermanentMediaError(f"unsupported video codec '{name}': this ffmpeg build cannot decode it")
    if video.width <= 0 or video.height <= 0:
        raise PermanentMediaError("the video stream has no picture size (undecodable)")
    if min(video.width, video.height) < MIN_DIMENSION:
        raise PermanentMediaError(
            f"too small: {video.width}x{video.height} pixels; a video must be at least "
            f"{MIN_DIMENSION}x{MIN_DIMENSION}"
        )
    if video.width * video.height > max_pixels:
        limit = "the 8K limit" if max_pixels == _DEFAULT_MAX_PIXELS else f"{max_pixels} pixels"
        raise PermanentMediaError(f"dimensions {video.width}x{video.height} exceed {limit}")
    if duration > max_duration_s:
        raise PermanentMediaError(
            f"longer than the {_human_duration(max_duration_s)} limit ({_human_duration(duration)})"
        )
    if video.fps <= 0 and video.avg_fps <= 0:
        raise PermanentMediaError("the video stream has no usable frame rate")

