"""What ffprobe says about a source, reduced to what the pipeline decides on.

Parsing only (ffprobe's JSON in, frozen dataclasses out): running ffprobe is
:mod:`pipeline.ffmpeg.probe`'s job.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """The first real video stream (cover art is not video).

    ``display_width``/``display_height`` are what a viewer sees: sample aspect ratio applied
    and swapped for 90/270 degree rotation. ``fps`` is ffprobe's ``r_frame_rate`` (the base
    rate), ``avg_fps`` the average; ``vfr`` is set when they disagree by more than rounding.
    ``start_offset_s`` is how much later than the container start the first video frame
    comes (a seek into the video must add it).
    """

    index: int
    codec: str
    profile: str | None
    width: int
    height: int
    display_width: int
    display_height: int
    rotation: int
    fps: Fraction
    avg_fps: Fraction
    vfr: bool
    frame_count: int | None
    pix_fmt: str | None
    bit_depth: int
    interlaced: bool
    field_order: str | None
    sar: Fraction
    duration_s: float | None
    start_offset_s: float
    bit_rate: int | None
    color_transfer: str | None = None


@dataclass(frozen=True, slots=True)
class AudioInfo:
    index: int
    codec: str
    channels: int
    channel_layout: str | None
    sample_rate: int | None
    bitrate: int | None
    duration_s: float | None
    language: str | None = None


@dataclass(frozen=True, slots=True)
class MediaInfo:
    """What ffprobe says about a source, reduced to what the pipeline decides on.

    ``truncated`` is set when an MP4/MOV's sample tables promise more bytes than the file
    holds (a faststart upload cut short probes fine otherwise).
    """

    container: str
    duration: float | None
    size_bytes: int | None
    bit_rate: int | None
    start_s: float
    video: VideoInfo | None
    audio: tuple[AudioInfo, ...]
    subtitle_count: int
    truncated: bool = False
    raw: dict = field(default_factory=dict, repr=False, compare=False)


def _fraction(value: str | None) -> Fraction:
    """ffprobe rate strings ("30000/1001", "0/0", "N/A") to a Fraction, 0 when unknown."""
    if not value or value in {"N/A", "0/0"}:
        return Fraction(0)
    try:
        num, _, den = value.partition("/")
        den_i = int(den) if den else 1
        return Fraction(int(num), den_i) if den_i else Fraction(0)
    except ValueError:
        return Fraction(0)


def _ratio(value: str | None) -> Fraction:
    """SAR strings ("1:1", "0:1", "N/A") to a Fraction; unknown means square pixels."""
    if value and ":" in value:
        num, den = value.split(":", 1)
        try:
            ratio = Fraction(int(num), int(den)) if int(den) else Fraction(0)
        except ValueError:
            ratio = Fraction(0)
        if ratio > 0:
            return ratio
    return Fraction(1)


def _float(value: object) -> float | None:
    try:
        result = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def _int(value: object) -> int | None:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _rotation(stream: dict) -> int:
    """Rotation in degrees (0/90/180/270) from the display matrix or the legacy tag."""
    for side_data in stream.get("side_data_list") or ():
        if "rotation" in side_data:
            return round(float(side_data["rotation"])) % 360
    rotate = (stream.get("tags") or {}).get("rotate")
    return round(float(rotate)) % 360 if rotate not in (None, "") else 0


def _bit_depth(stream: dict) -> int:
    raw = _int(stream.get("bits_per_raw_sample"))
    if raw:
        return raw
    match = re.search(r"p(\d+)(?:le|be)$", stream.get("pix_fmt") or "")
    return int(match.group(1)) if match else 8


def _is_vfr(*, fps: Fraction, avg_fps: Fraction, frames: int | None, duration: float | None) -> bool:
    """VFR when the base rate and the real frame count disagree by more than rounding.

    Tolerance: 1.5 frames or 0.5 %, whichever is more, so a CFR file whose last frame's
    duration is off (edit lists) is not called VFR.
    """
    if fps <= 0:
        return avg_fps > 0
    if frames and duration:
        expected = duration * float(fps)
        return abs(expected - frames) > max(1.5, 0.005 * expected)
    if avg_fps > 0:
        return abs(float(avg_fps - fps)) > 0.005 * float(fps)
    return False


def _parse_video(stream: dict, *, container_start: float, count_packets: bool) -> VideoInfo:
    width = _int(stream.get("width")) or 0
    height = _int(stream.get("height")) or 0
    sar = _ratio(stream.get("sample_aspect_ratio"))
    rotation = _rotation(stream)
    display_width = max(1, round(width * sar)) if width else 0
    display_height = height
    if rotation in (90, 270):
        display_width, display_height = display_height, display_width

    fps = _fraction(stream.get("r_frame_rate"))
    avg_fps = _fraction(stream.get("avg_frame_rate"))
    duration = _float(stream.get("duration"))
    frames = _int(stream.get("nb_read_packets")) if count_packets else None
    frames = frames or _int(stream.get("nb_frames"))
    if frames is None and duration and (avg_fps or fps):
        frames = round(duration * float(avg_fps or fps))
    field_order = stream.get("field_order")
    start = _float(stream.get("start_time"))
    return VideoInfo(
        index=int(stream["index"]),
        codec=stream.get("codec_name") or "none",
        profile=stream.get("profile"),
        width=width,
        height=height,
        display_width=display_width,
        display_height=display_height,
        rotation=rotation,
        fps=fps,
        avg_fps=avg_fps,
        vfr=_is_vfr(fps=fps, avg_fps=avg_fps, frames=frames, duration=duration),
        frame_count=frames,
        pix_fmt=stream.get("pix_fmt"),
        bit_depth=_bit_depth(stream),
        interlaced=field_order in {"tt", "bb", "tb", "bt"},
        field_order=field_order,
        sar=sar,
        duration_s=duration,
        start_offset_s=max(0.0, (start or 0.0) - container_start),
        bit_rate=_int(stream.get("bit_rate")),
        color_transfer=stream.get("color_transfer"),
    )


def _parse_audio(stream: dict) -> AudioInfo:
    return AudioInfo(
        index=int(stream["index"]),
        codec=stream.get("codec_name") or "none",
        channels=_int(stream.get("channels")) or 0,
        channel_layout=stream.get("channel_layout"),
        sample_rate=_int(stream.get("sample_rate")),
        bitrate=_int(stream.get("bit_rate")),
        duration_s=_float(stream.get("duration")),
        language=(stream.get("tags") or {}).get("language"),
    )


def _looks_truncated(fmt: dict, streams: list[dict]) -> bool:
    """An MP4/MOV whose sample tables describe more payload than the file holds.

    The mov demuxer derives each stream's bit rate from its sample sizes, so rate x duration
    is the payload the index promises; a file more than 5 % short of that lost its tail.
    """
    if not (fmt.get("format_name") or "").startswith("mov,"):
        return False
    size = _int(fmt.get("size"))
    payload = 0.0
    for stream in streams:
        rate, duration = _int(stream.get("bit_rate")), _float(stream.get("duration"))
        if rate and duration:
            payload += rate * duration / 8
    return bool(size and payload and size < 0.95 * payload)


def _media_info(data: dict, *, count_packets: bool) -> MediaInfo:
    fmt = data.get("format") or {}
    streams = data.get("streams") or []
    container_start = _float(fmt.get("start_time")) or 0.0
    video_streams = [
        s for s in streams
        if s.get("codec_type") == "video"
        and not (s.get("disposition") or {}).get("attached_pic")
    ]  # fmt: skip
    return MediaInfo(
        container=fmt.get("format_name") or "unknown",
        duration=_float(fmt.get("duration")),
        size_bytes=_int(fmt.get("size")),
        bit_rate=_int(fmt.get("bit_rate")),
        start_s=container_start,
        video=(
            _parse_video(video_streams[0], container_start=container_start,
                         count_packets=count_packets)
            if video_streams else None
        ),
        audio=tuple(_parse_audio(s) for s in streams if s.get("codec_type") == "audio"),
        subtitle_count=sum(1 for s in streams if s.get("codec_type") == "subtitle"),
        truncated=_looks_truncated(fmt, streams),
        raw=data,
    )  # fmt: skip

