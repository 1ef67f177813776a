"""The one wrapper around ffmpeg and ffprobe (STYLE rule 7).

Everything that knows an ffmpeg flag, parses ffmpeg output or decides whether an ffmpeg
failure is worth retrying lives here (packaging-side commands live next door in
``pipeline.packaging_cmds`` and run through :func:`run_ffmpeg`). Services and RQ jobs call
these functions and handle the typed errors; nothing here imports Django, so it is tested
against the real binaries on tiny generated clips without settings.

Command builders return the arguments that follow the program name and its global flags;
:func:`run_ffmpeg` adds ``ffmpeg -hide_banner -nostdin -loglevel error -progress pipe:1 -y``.
The full command line it ran is returned in :class:`RunResult` for lineage.

Binaries are looked up on ``PATH`` as ``ffmpeg``/``ffprobe``; the settings layer may assign
:data:`FFMPEG` / :data:`FFPROBE` (for example to the imageio-ffmpeg build that has libvmaf).
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import re
import selectors
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

from pipeline.chunking import Chunk, segment_frames

__all__ = [
    "FFMPEG",
    "FFPROBE",
    "AudioInfo",
    "AudioRendition",
    "ChunkInput",
    "MediaCancelledError",
    "MediaError",
    "MediaInfo",
    "PermanentMediaError",
    "Progress",
    "RunResult",
    "TransientMediaError",
    "VideoInfo",
    "VideoRendition",
    "build_audio_command",
    "build_unit_command",
    "chunk_input",
    "classify_failure",
    "concat_command",
    "concat_input_args",
    "count_frames",
    "ffmpeg_version",
    "warm_up",
    "ffprobe_version",
    "keyframe_indices",
    "probe",
    "rendition_size",
    "run_ffmpeg",
    "stream_durations",
    "validate_source",
    "write_concat_list",
]

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"

VIDEO_CODECS = frozenset({"libx264", "libx265", "libvpx-vp9", "libsvtav1"})
AUDIO_CODECS = frozenset({"aac", "libopus"})

_STDERR_TAIL_LINES = 40
_STDERR_LINE_MAX = 500
_NETWORK_TIMEOUT_US = 30_000_000  # ffmpeg's -rw_timeout: a stalled read fails instead of hanging
_IMAGE_FORMATS = frozenset(
    {"image2", "png_pipe", "jpeg_pipe", "webp_pipe", "bmp_pipe", "tiff_pipe", "gif_pipe",
     "jpegxl_pipe", "svg_pipe", "qoi_pipe", "pam_pipe", "ppm_pipe", "dpx_pipe", "exr_pipe"}
)  # fmt: skip
_IMAGE_CODECS = frozenset(
    {"png", "mjpeg", "jpegls", "bmp", "webp", "tiff", "gif", "jpeg2000", "jpegxl", "qoi"}
)
# Demuxers that accept plain text (ANSI art, subtitles): a .txt upload is not a video.
_TEXT_FORMATS = frozenset({"tty", "srt", "webvtt", "ass", "microdvd", "subviewer", "jacosub"})
# First-box types of an ISO BMFF (MP4/MOV) file: tells "truncated MP4" from "random bytes".
_BMFF_BOXES = frozenset({b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid"})
_DEFAULT_MAX_PIXELS = 8192 * 4320
# Smaller pictures cannot be scaled to an even-sized rendition that anyone could watch.
MIN_DIMENSION = 16
_PICTURE_SIZE_INVALID = re.compile(r"Picture size (\d+)x(\d+) is invalid")


# --------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------


class MediaError(Exception):
    """An ffmpeg/ffprobe failure with a reason a person can act on.

    ``reason`` is one sentence for the asset page and the event log; ``stderr_tail`` keeps
    the last lines ffmpeg printed, for whoever has to debug it.
    """

    def __init__(self, reason: str, *, stderr_tail: str = "", command: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.stderr_tail = stderr_tail
        self.command = command


class PermanentMediaError(MediaError):
    """The input (or the command) is bad: retrying cannot help, fail at once."""


class TransientMediaError(MediaError):
    """I/O, network, a full disk, a killed process: the same step may well succeed later."""


class MediaCancelledError(MediaError):
    """ffmpeg was stopped because its cancel event was set; neither retry nor failure."""


# (pattern, error class, reason). Checked in order, first match wins. Transient patterns come
# first: a network drop mid-file makes the demuxer print "Invalid data" too, and a retry is
# the cheaper mistake.
_FAILURE_RULES: tuple[tuple[re.Pattern[str], type[MediaError], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), cls, reason)
    for pattern, cls, reason in (
        (r"Server returned 5\d\d|Server returned 5XX", TransientMediaError,
         "the storage server returned a 5xx error; retry later"),
        (r"Server returned 403", TransientMediaError,
         "the storage server refused access (HTTP 403); the presigned URL may have expired "
         "and a retry presigns a new one"),
        (r"Connection refused", TransientMediaError,
         "could not connect to the storage server (connection refused)"),
        (r"timed out|Operation timed out", TransientMediaError,
         "the connection to the storage server timed out"),
        (r"Connection reset by peer|Broken pipe|Network is unreachable|"
         r"Temporary failure in name resolution|End of file.*http", TransientMediaError,
         "the network connection to the storage server failed"),
        (r"Input/output error|I/O error", TransientMediaError,
         "an input/output error occurred reading or writing media"),
        (r"Cannot allocate memory|Out of memory", TransientMediaError,
         "the worker ran out of memory"),
        (r"Server returned 404|Server returned 4\d\d", PermanentMediaError,
         "the source object could not be fetched (HTTP 4xx): it does not exist or is not "
         "readable"),
        (r"No such file or directory", PermanentMediaError,
         "a file ffmpeg needed does not exist"),
        (r"moov atom not found", PermanentMediaError,
         "file is truncated or not a media file (moov atom not found)"),
        (r"does not contain any stream", PermanentMediaError,
         "not a media file: it contains no audio or video streams"),
        (r"matches no streams", PermanentMediaError,
         "the source has no stream of the kind this step needs"),
        (r"Decoder \(codec .*\) not found|Unsupported codec|Could not find codec parameters|"
         r"Failed to open codec|no decoder", PermanentMediaError,
         "unsupported or undecodable codec"),
        (r"Invalid data found when processing input", PermanentMediaError,
         "not a media file, or its data is corrupt (Invalid data found when processing input)"),
        (r"Unknown encoder|Unrecognized option|Option not found|Error parsing|"
         r"Invalid argument|Error initializing", PermanentMediaError,
         "ffmpeg rejected the command it was given (a bug in the command builder)"),
    )
)  # fmt: skip

_NO_SPACE = re.compile(r"No space left on device", re.IGNORECASE)
DISK_FULL_REASON = "the worker's disk is full (No space left on device)"
_OUTPUT_NOT_FINISHED = re.compile(r"Error writing trailer|Error closing file|No space left on device", re.IGNORECASE)

# A corrupt packet in the middle of a usable file is logged at error level but ffmpeg goes
# on; such lines must not turn an unrelated failure into a permanent one.
_IGNORED_FOR_CLASSIFICATION = re.compile(r"Error while decoding stream|error while decoding MB")


def classify_failure(
    *, returncode: int, stderr_tail: str, command: str = "", program: str = "ffmpeg"
) -> MediaError:
    """Turn a non-zero exit into a typed error (returned, for the caller to raise).

    Order: a full disk (clear reason, transient), then death by signal (OOM killer, a worker
    shutting down: transient), then the stderr rules above, then ffmpeg's 255 ("received a
    signal"), then transient by default: an unknown failure is retried a bounded number of
    times, whereas a wrong "permanent" would throw away good sources.
    """
    lines = [line for line in stderr_tail.splitlines() if not _IGNORED_FOR_CLASSIFICATION.search(line)]
    text = "\n".join(lines)
    last = lines[-1].strip() if lines else ""
    kwargs = {"stderr_tail": stderr_tail, "command": command}

    if _NO_SPACE.search(text):
        return TransientMediaError(f"{DISK_FULL_REASON}; free space, then retry", **kwargs)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return TransientMediaError(
            f"{program} was killed by {name} (out of memory, or the worker was stopped)",
            **kwargs,
        )
    for pattern, cls, reason in _FAILURE_RULES:
        if pattern.search(text):
            return cls(reason, **kwargs)
    if returncode == 255:
        return TransientMediaError(f"{program} was interrupted by a signal", **kwargs)
    detail = f": {last}" if last else ""
    return TransientMediaError(f"{program} failed with exit code {returncode}{detail}", **kwargs)


# --------------------------------------------------------------------------------------
# Probe
# --------------------------------------------------------------------------------------


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


def _is_url(url_or_path: str | os.PathLike[str]) -> bool:
    return str(url_or_path).startswith(("http://", "https://"))


def _input_options(url_or_path: str | os.PathLike[str], *, reconnect: bool) -> list[str]:
    """Protocol options for network inputs; file inputs take none (ffmpeg rejects them)."""
    if not _is_url(url_or_path):
        return []
    options = ["-rw_timeout", str(_NETWORK_TIMEOUT_US)]
    if reconnect:
        # A long unit read over HTTP survives a dropped connection by resuming with a range
        # request instead of failing the whole unit.
        options += ["-reconnect", "1", "-reconnect_streamed", "1", "-reconnect_delay_max", "5"]
    return options


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


def _sniff(url_or_path: str | os.PathLike[str], *, timeout: float) -> bytes:
    """The first bytes of the source, to tell a truncated MP4 from arbitrary bytes.

    Only used on the failure path, so an extra request to a URL costs nothing that matters.
    """
    if _is_url(url_or_path):
        import urllib.request

        # The scheme was checked by _is_url: only http(s) reaches urllib.
        request = urllib.request.Request(  # noqa: S310
            str(url_or_path), headers={"Range": "bytes=0-63"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                return response.read(64)
        except OSError:
            return b""
    try:
        with open(url_or_path, "rb") as handle:
            return handle.read(64)
    except OSError:
        return b""


def _probe_failure(
    url_or_path: str | os.PathLike[str],
    *,
    returncode: int,
    stderr: str,
    command: str,
    timeout: float,
) -> MediaError:
    """Map an ffprobe failure to the reasons the pipeline shows publishers."""
    tail = _tail_text(stderr.splitlines())
    kwargs = {"stderr_tail": tail, "command": command}
    if not _is_url(url_or_path):
        path = Path(url_or_path)
        if not path.exists():
            return PermanentMediaError(f"file not found: {path}", **kwargs)
        if path.stat().st_size == 0:
            return PermanentMediaError("not a media file: the file is empty", **kwargs)
    oversized = _PICTURE_SIZE_INVALID.search(stderr)
    if oversized:
        # ffmpeg refuses to allocate a frame this large before any of our checks can run.
        return PermanentMediaError(
            f"dimensions {oversized[1]}x{oversized[2]} exceed what can be decoded (the limit is 8K)", **kwargs
        )
    if "moov atom not found" in stderr:
        head = _sniff(url_or_path, timeout=timeout)
        if len(head) >= 8 and head[4:8] in _BMFF_BOXES:
            return PermanentMediaError(
                "file is truncated: the MP4 index (moov atom) is missing; upload it again",
                **kwargs,
            )
        if not head:
            return PermanentMediaError("not a media file: the file is empty", **kwargs)
        return PermanentMediaError("not a media file (unrecognised data)", **kwargs)
    error = classify_failure(returncode=returncode, stderr_tail=tail, command=command, program="ffprobe")
    if isinstance(error, PermanentMediaError) and "Invalid data found" in stderr:
        return PermanentMediaError("not a media file (unrecognised data)", **kwargs)
    return error


def probe(
    url_or_path: str | os.PathLike[str],
    *,
    timeout: float = 60,
    count_packets: bool | None = None,
) -> MediaInfo:
    """Describe a source (local path or http(s) presigned URL) with one ffprobe run.

    ``count_packets`` makes ffprobe read every packet (no decoding) to get an exact frame
    count, which matters for VFR detection in containers without a frame index (MKV, TS).
    By default it is on for local files (a disk read) and off for URLs (it would download
    the whole object); MP4's index gives the count for free either way.

    Raises PermanentMediaError with a publisher-readable reason for bad input and
    TransientMediaError for network trouble. Does not judge the media: see
    :func:`validate_source`.
    """
    if count_packets is None:
        count_packets = not _is_url(url_or_path)
    argv = [
        FFPROBE, "-hide_banner", "-v", "error",
        *_input_options(url_or_path, reconnect=False),
        "-show_format", "-show_streams", *(["-count_packets"] if count_packets else []),
        "-of", "json", str(url_or_path),
    ]  # fmt: skip
    command = shlex.join(argv)
    try:
        completed = subprocess.run(
            argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise TransientMediaError(
            f"ffprobe did not answer within {timeout:g} s",
            command=command,
            stderr_tail=_tail_text(_decode(exc.stderr).splitlines()),
        ) from exc
    except OSError as exc:
        raise TransientMediaError(f"ffprobe could not be started: {exc}", command=command) from exc
    stderr = _decode(completed.stderr)
    if completed.returncode != 0:
        raise _probe_failure(
            url_or_path, returncode=completed.returncode, stderr=stderr, command=command, timeout=timeout
        )
    try:
        data = json.loads(completed.stdout or b"{}")
    except json.JSONDecodeError as exc:
        raise TransientMediaError(
            "ffprobe printed unreadable output", command=command, stderr_tail=_tail_text(stderr.splitlines())
        ) from exc
    return _media_info(data, count_packets=count_packets)


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


@lru_cache(maxsize=4)
def _decodable_codecs(binary: str) -> frozenset[str]:
    """Codec names this ffmpeg build can decode (``ffmpeg -codecs``, 'D' flag)."""
    out = subprocess.run(
        [binary, "-hide_banner", "-codecs"], capture_output=True, check=False, timeout=30
    ).stdout.decode(errors="replace")
    names = set()
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2 and len(parts[0]) == 6 and parts[0][0] == "D":
            names.add(parts[1])
    return frozenset(names)


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
    if video.codec in {"none", ""} or video.codec not in _decodable_codecs(FFMPEG):
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


# --------------------------------------------------------------------------------------
# Running ffmpeg
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Progress:
    """One progress report. ``percent`` is 0-100 (None when no total is known)."""

    frame: int
    fps: float
    speed: float | None
    percent: float | None
    eta_s: float | None
    out_time_s: float
    done: bool = False


@dataclass(frozen=True, slots=True)
class RunResult:
    """How a finished ffmpeg run went; ``cpu_s`` is the child's user+system CPU time.

    ``frames`` is ffmpeg's own count of video frames written (from the last progress
    block), so a unit can check its frame count without another ffprobe process.
    """

    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    max_rss_kb: int
    command: str
    frames: int | None = None

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s


def _decode(data: bytes | str | None) -> str:
    if data is None:
        return ""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def _tail_text(lines: Sequence[str]) -> str:
    return "\n".join(line[:_STDERR_LINE_MAX] for line in list(lines)[-_STDERR_TAIL_LINES:])


def _load_libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None


_LIBC = _load_libc()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in the child before exec: SIGKILL ffmpeg if the worker process dies.

    RQ kills a work horse that overruns its timeout with SIGKILL; without this the ffmpeg it
    started would keep encoding, orphaned, and fight the retry for the CPU.
    """
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _child_setup(niceness: int) -> Callable[[], None] | None:
    if not niceness:
        return _die_with_parent if _LIBC is not None else None

    def setup() -> None:
        _die_with_parent()
        os.nice(niceness)

    return setup


class _ProgressParser:
    """Turns ``-progress`` key=value blocks into rate-limited Progress callbacks."""

    def __init__(
        self,
        *,
        on_progress: Callable[[Progress], None] | None,
        total_frames: int | None,
        duration_s: float | None,
        interval_s: float,
        started: float,
    ) -> None:
        self.on_progress = on_progress
        self.total_frames = total_frames
        self.duration_s = duration_s
        self.interval_s = interval_s
        self.started = started
        self.block: dict[str, str] = {}
        self.final: dict[str, str] = {}
        self.last_emit = -math.inf
        self.best_percent = 0.0
        self.buffer = b""

    def feed(self, data: bytes) -> None:
        self.buffer += data
        *lines, self.buffer = self.buffer.split(b"\n")
        for raw in lines:
            key, sep, value = raw.decode("utf-8", errors="replace").strip().partition("=")
            if not sep:
                continue
            self.block[key] = value
            if key == "progress":
                self.final = self.block
                self._emit(done=value == "end")
                self.block = {}

    def _emit(self, *, done: bool) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if not done and now - self.last_emit < self.interval_s:
            return
        self.last_emit = now
        block = self.block
        frame = _int(block.get("frame")) or 0
        out_us = _int(block.get("out_time_us"))
        out_time_s = max(0.0, out_us / 1e6) if out_us is not None else 0.0
        speed_text = (block.get("speed") or "").rstrip("x").strip()
        speed = _float(speed_text) if speed_text not in {"", "N/A"} else None
        percent: float | None = None
        if self.total_frames:
            percent = 100.0 * frame / self.total_frames
        elif self.duration_s:
            percent = 100.0 * out_time_s / self.duration_s
        if percent is not None:
            percent = 100.0 if done else min(100.0, max(self.best_percent, percent))
            self.best_percent = percent
        eta: float | None = None
        if done:
            eta = 0.0
        elif percent and percent > 0:
            elapsed = now - self.started
            eta = elapsed * (100.0 - percent) / percent
        self.on_progress(
            Progress(
                frame=frame,
                fps=_float(block.get("fps")) or 0.0,
                speed=speed,
                percent=percent,
                eta_s=eta,
                out_time_s=out_time_s,
                done=done,
            )
        )


def run_ffmpeg(
    args: Sequence[str],
    *,
    on_progress: Callable[[Progress], None] | None = None,
    total_frames: int | None = None,
    duration_s: float | None = None,
    cancel_event: threading.Event | None = None,
    timeout: float | None = None,
    progress_interval_s: float = 0.5,
    kill_grace_s: float = 0.5,
    binary: str | None = None,
    niceness: int = 0,
) -> RunResult:
    """Run ffmpeg with ``args`` (as returned by the builders) and report progress.

    * ``on_progress`` is called at most once per ``progress_interval_s`` (plus once at the
      end), so a caller can forward every call to the channel layer without flooding it.
      Percent comes from ``total_frames`` when given, else ``duration_s``.
    * Setting ``cancel_event`` stops ffmpeg (SIGTERM, then SIGKILL after ``kill_grace_s``)
      and raises MediaCancelledError; passing ``timeout`` does the same and raises
      TransientMediaError.
    * A non-zero exit raises the typed error from :func:`classify_failure` with the last
      lines of stderr.
    * CPU time comes from the child's own rusage (``os.wait4``), so concurrent runs in other
      threads do not blur it.
    * ``niceness`` lowers ffmpeg's CPU priority (work that must yield to encoding).
    """
    argv = [
        binary or FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "error",
        "-progress", "pipe:1", "-stats_period", f"{max(0.1, progress_interval_s):g}", "-y",
        *args,
    ]  # fmt: skip
    command = shlex.join(argv)
    env = None
    if "SVT_LOG" not in os.environ:
        # SVT-AV1 prints its banner straight to stderr; keep the tail for real errors.
        env = {**os.environ, "SVT_LOG": "1"}
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            preexec_fn=_child_setup(niceness),
        )
    except OSError as exc:
        raise TransientMediaError(
            f"ffmpeg could not be started on this worker: {exc}", command=command
        ) from exc

    parser = _ProgressParser(
        on_progress=on_progress,
        total_frames=total_frames,
        duration_s=duration_s,
        interval_s=progress_interval_s,
        started=started,
    )
    stderr_lines: deque[str] = deque(maxlen=_STDERR_TAIL_LINES)
    stderr_partial = b""
    stop_reason: str | None = None
    kill_at: float | None = None
    deadline = started + timeout if timeout else None
    selector = selectors.DefaultSelector()
    assert proc.stdout is not None and proc.stderr is not None  # noqa: S101 - set by PIPE
    for stream in (proc.stdout, proc.stderr):
        os.set_blocking(stream.fileno(), False)
        selector.register(stream, selectors.EVENT_READ)
    try:
        while selector.get_map():
            now = time.monotonic()
            if stop_reason is None:
                if cancel_event is not None and cancel_event.is_set():
                    stop_reason = "cancelled"
                elif deadline is not None and now >= deadline:
                    stop_reason = "timeout"
                if stop_reason is not None:
                    proc.terminate()
                    kill_at = now + kill_grace_s
            elif kill_at is not None and now >= kill_at:
                proc.kill()
                kill_at = None
            for key, _ in selector.select(timeout=0.05):
                stream = key.fileobj
                try:
                    data = os.read(stream.fileno(), 65536)  # type: ignore[union-attr]
                except BlockingIOError:
                    continue
                if not data:
                    selector.unregister(stream)
                    continue
                if stream is proc.stdout:
                    parser.feed(data)
                else:
                    *lines, stderr_partial = (stderr_partial + data).split(b"\n")
                    stderr_lines.extend(_decode(line).rstrip() for line in lines)
                    stderr_partial = stderr_partial[-_STDERR_LINE_MAX * 4 :]
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    finally:
        selector.close()
        if proc.returncode is None:  # an exception escaped the loop (e.g. from on_progress)
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()

    if stderr_partial:
        stderr_lines.append(_decode(stderr_partial).rstrip())
    tail = _tail_text(stderr_lines)
    wall = time.monotonic() - started
    if stop_reason == "cancelled":
        raise MediaCancelledError("ffmpeg was cancelled", stderr_tail=tail, command=command)
    if stop_reason == "timeout":
        raise TransientMediaError(
            f"ffmpeg did not finish within {timeout:g} s and was stopped",
            stderr_tail=tail,
            command=command,
        )
    if proc.returncode != 0:
        raise classify_failure(returncode=proc.returncode, stderr_tail=tail, command=command)
    if _OUTPUT_NOT_FINISHED.search(tail):
        # ffmpeg 5.1 exits 0 when the trailer (an MP4's index) cannot be written, e.g. on a
        # full disk: the file looks written and is unplayable. Never let it pass as output.
        raise classify_failure(returncode=1, stderr_tail=tail, command=command)
    return RunResult(
        wall_s=wall,
        cpu_user_s=usage.ru_utime,
        cpu_sys_s=usage.ru_stime,
        max_rss_kb=usage.ru_maxrss,
        command=command,
        frames=_int(parser.final.get("frame")),
    )


def _version(binary: str) -> str:
    try:
        out = subprocess.run([binary, "-version"], capture_output=True, check=True, timeout=30).stdout.decode(
            errors="replace"
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise TransientMediaError(f"{binary} -version failed: {exc}") from exc
    match = re.match(r"\S+ version (\S+)", out)
    return match.group(1) if match else out.splitlines()[0] if out else "unknown"


@lru_cache(maxsize=4)
def _cached_version(binary: str) -> str:
    return _version(binary)


def ffmpeg_version() -> str:
    """e.g. "5.1.9-0+deb12u1"; recorded in every artifact's lineage. Cached per binary."""
    return _cached_version(FFMPEG)


def warm_up() -> None:
    """Ask ffmpeg once, ahead of the first job, what jobs ask it (each answer is cached per
    process): its version, for lineage records, and the codecs it decodes, for ingest's
    checks. About 0.1 s each on a job's critical path otherwise."""
    ffmpeg_version()
    _decodable_codecs(FFMPEG)


def ffprobe_version() -> str:
    return _cached_version(FFPROBE)


def _ffprobe_json(argv_tail: Sequence[str], *, timeout: float = 120) -> dict:
    argv = [FFPROBE, "-hide_banner", "-v", "error", *argv_tail, "-of", "json"]
    command = shlex.join(argv)
    try:
        completed = subprocess.run(
            argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as exc:
        raise TransientMediaError(f"ffprobe did not answer within {timeout:g} s", command=command) from exc
    if completed.returncode != 0:
        tail = _tail_text(_decode(completed.stderr).splitlines())
        raise classify_failure(
            returncode=completed.returncode, stderr_tail=tail, command=command, program="ffprobe"
        )
    return json.loads(completed.stdout or b"{}")


def count_frames(path: str | os.PathLike[str]) -> int:
    """Video frames in a file, counted from packets (no decoding: fast)."""
    data = _ffprobe_json(
        ["-select_streams", "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets", str(path)]
    )
    streams = data.get("streams") or []
    if not streams:
        raise PermanentMediaError(f"no video stream in {path}")
    return int(streams[0].get("nb_read_packets") or 0)


def keyframe_indices(path: str | os.PathLike[str]) -> list[int]:
    """Presentation-order indices of the video keyframes (QC: GOP alignment)."""
    data = _ffprobe_json(["-select_streams", "v:0", "-show_entries", "packet=pts,flags", str(path)])
    packets = sorted(
        (int(p["pts"]), "K" in p.get("flags", ""))
        for p in data.get("packets") or []
        if p.get("pts") not in (None, "N/A")
    )
    return [index for index, (_, key) in enumerate(packets) if key]


def stream_durations(path: str | os.PathLike[str]) -> dict[str, float | None]:
    """Container, first video and first audio duration in seconds (QC: A/V drift)."""
    data = _ffprobe_json(["-show_entries", "format=duration:stream=codec_type,duration", str(path)])
    result: dict[str, float | None] = {
        "format": _float((data.get("format") or {}).get("duration")),
        "video": None,
        "audio": None,
    }
    for stream in data.get("streams") or []:
        kind = stream.get("codec_type")
        if kind in ("video", "audio") and result[kind] is None:
            result[kind] = _float(stream.get("duration"))
    return result


# --------------------------------------------------------------------------------------
# Encode units, audio, assembly
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoRendition:
    """One rung of the ladder.

    ``preset`` is the encoder's own: x264/x265 names ("veryfast"), SVT-AV1 a number
    ("8"), VP9 "deadline:cpu-used" ("good:4", "realtime:8"). Give ``crf`` (quality target),
    ``bitrate_kbps`` (average), or both (VP9 constrained quality); ``maxrate_kbps`` with
    ``bufsize_kbps`` caps peaks (capped CRF).
    """

    name: str
    codec: str
    height: int
    crf: int | None = None
    bitrate_kbps: int | None = None
    maxrate_kbps: int | None = None
    bufsize_kbps: int | None = None
    preset: str | None = None
    profile: str | None = None

    def __post_init__(self) -> None:
        if self.codec not in VIDEO_CODECS:
            raise ValueError(f"codec must be one of {sorted(VIDEO_CODECS)}, got {self.codec!r}")
        if self.height <= 0 or self.height % 2:
            raise ValueError(f"height must be a positive even number, got {self.height}")
        if self.crf is None and self.bitrate_kbps is None:
            raise ValueError("a rendition needs crf, bitrate_kbps or both")
        if (self.maxrate_kbps is None) != (self.bufsize_kbps is None):
            raise ValueError("maxrate_kbps and bufsize_kbps go together")


@dataclass(frozen=True, slots=True)
class AudioRendition:
    name: str
    codec: str
    bitrate_kbps: int
    channels: int = 2
    sample_rate: int = 48000

    def __post_init__(self) -> None:
        if self.codec not in AUDIO_CODECS:
            raise ValueError(f"codec must be one of {sorted(AUDIO_CODECS)}, got {self.codec!r}")
        if self.bitrate_kbps <= 0 or self.channels <= 0:
            raise ValueError("bitrate_kbps and channels must be positive")


def _even(value: Fraction | float) -> int:
    """Nearest even integer >= 2 (4:2:0 chroma needs even dimensions)."""
    return max(2, 2 * math.floor(Fraction(value) / 2 + Fraction(1, 2)))


def rendition_size(*, source: VideoInfo, height: int) -> tuple[int, int]:
    """Output width and height for a rendition: the source's display aspect, both even.

    Uses the display size (rotation and SAR applied), so a portrait phone clip stays portrait
    and anamorphic DVD footage gets square pixels.
    """
    if source.display_width <= 0 or source.display_height <= 0:
        raise PermanentMediaError("the video stream has no picture size (undecodable)")
    aspect = Fraction(source.display_width, source.display_height)
    # Prefer a size with EXACTLY the source's aspect (416x234 rather than 426x240 for 16:9):
    # the DASH muxer only puts renditions of one aspect ratio in one adaptation set, and
    # players switch bitrates within a set only. Such heights are multiples of
    # 2*denominator; take the nearest one within 7 % of the rung, else round to even.
    step = 2 * aspect.denominator
    exact = step * max(1, math.floor(Fraction(height, step) + Fraction(1, 2)))
    if abs(exact - height) <= height * 0.07 and exact <= max(height, source.display_height):
        return int(exact * aspect), exact
    out_height = _even(height)
    return _even(out_height * aspect), out_height


def _seconds(value: float | Fraction) -> str:
    return f"{float(value):.6f}"


def _rate_args(rendition: VideoRendition) -> list[str]:
    args: list[str] = []
    if rendition.crf is not None:
        args += ["-crf", str(rendition.crf)]
    if rendition.bitrate_kbps is not None:
        args += ["-b:v", f"{rendition.bitrate_kbps}k"]
    elif rendition.codec == "libvpx-vp9":
        # libvpx: CRF with -b:v 0 is constant quality; CRF capped by a maxrate needs the cap
        # as -b:v (constrained quality), it refuses a maxrate "without a bitrate".
        args += ["-b:v", f"{rendition.maxrate_kbps}k" if rendition.maxrate_kbps else "0"]
    if rendition.maxrate_kbps is not None:
        args += ["-maxrate", f"{rendition.maxrate_kbps}k", "-bufsize", f"{rendition.bufsize_kbps}k"]
    return args


def _encoder_args(rendition: VideoRendition, *, gop: int) -> list[str]:
    """Codec, preset and the closed, fixed GOP every segment boundary depends on."""
    force = ["-force_key_frames", f"expr:eq(mod(n,{gop}),0)"]
    codec = rendition.codec
    args = ["-c:v", codec]
    if rendition.profile:
        args += ["-profile:v", rendition.profile]
    if codec == "libx264":
        args += [
            "-preset",
            rendition.preset or "veryfast",
            *_rate_args(rendition),
            "-g",
            str(gop),
            "-keyint_min",
            str(gop),
            "-sc_threshold",
            "0",
            "-forced-idr",
            "1",
            *force,
        ]
    elif codec == "libx265":
        args += [
            "-preset",
            rendition.preset or "veryfast",
            *_rate_args(rendition),
            "-x265-params",
            f"keyint={gop}:min-keyint={gop}:scenecut=0:open-gop=0:log-level=error",
            "-forced-idr",
            "1",
            *force,
            "-tag:v",
            "hvc1",
        ]  # Apple players want hvc1 (parameter sets out of band)
    elif codec == "libvpx-vp9":
        deadline, _, cpu_used = (rendition.preset or "good:4").partition(":")
        args += [
            "-deadline",
            deadline,
            "-cpu-used",
            cpu_used or "4",
            "-row-mt",
            "1",
            *_rate_args(rendition),
            "-g",
            str(gop),
            "-keyint_min",
            str(gop),
            *force,
        ]
    else:  # libsvtav1: ffmpeg 5.1's wrapper ignores forced keyframes, so the GOP does it.
        args += [
            "-preset",
            rendition.preset or "8",
            *_rate_args(rendition),
            "-g",
            str(gop),
            "-svtav1-params",
            f"keyint={gop}:irefresh-type=2:scd=0",
        ]
    return args


@dataclass(frozen=True, slots=True)
class ChunkInput:
    """How to read exactly one chunk's frames of a source: ``args`` end with ``-i <source>``,
    ``filters`` put its frames on the planned grid with the first at 0, and ``pad`` (a filter
    to place after scaling) clones the last frame when the source ends a few frames early."""

    args: list[str]
    filters: list[str]
    pad: str


def chunk_input(
    *, input_url: str | os.PathLike[str], chunk: Chunk, fps: Fraction, source: VideoInfo
) -> ChunkInput:
    """The source side of an encode unit, shared with quality measurement
    (:mod:`pipeline.quality_cmds`) so that both see the same frames, one to one.

    How the range stays frame exact:

    * the input seek goes half a frame *before* the chunk's first frame (ffmpeg's accurate
      seek drops frames before the seek point, and a seek time rounded up to the microsecond
      would drop the first wanted frame), and ``setpts`` shifts that half frame back so
      the chunk's first frame is at 0;
    * ``fps=<planned fps>:start_time=0`` makes the output constant-rate on the global frame
      grid (a no-op for CFR sources, the VFR to CFR conversion otherwise);
    * ``-t`` bounds how much is read, ``tpad`` clones the last frame if the source ends a
      few frames early (edit-list slop); the caller cuts at ``chunk.frame_count``.
    """
    fps = Fraction(fps)
    chunk_start = Fraction(chunk.start_frame) / fps  # relative to the first video frame

    args = _input_options(input_url, reconnect=True)
    seek = Fraction(0)
    if chunk.start_frame > 0:
        seek = Fraction(source.start_offset_s) + chunk_start - Fraction(1, 2) / fps
        args += ["-ss", _seconds(seek)]
    # After the seek, ffmpeg timestamps are relative to the seek point; shift them so the
    # chunk's first frame sits at 0.
    shift = seek - Fraction(source.start_offset_s) - chunk_start
    read_s = (chunk.frame_count + 1) / fps + Fraction(1, 2) / fps
    args += ["-t", _seconds(read_s), "-i", str(input_url)]

    filters = []
    if source.interlaced:
        filters.append("bwdif=mode=send_frame:deint=interlaced")
    filters += [
        f"setpts=PTS{'+' if shift >= 0 else '-'}{float(abs(shift)):.9f}/TB",
        f"fps=fps={fps.numerator}/{fps.denominator}:start_time=0",
    ]
    pad_frames = max(2, math.ceil(fps / 2))
    return ChunkInput(args=args, filters=filters, pad=f"tpad=stop_mode=clone:stop={pad_frames}")


def build_unit_command(
    *,
    input_url: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    chunk: Chunk,
    rendition: VideoRendition,
    fps: Fraction,
    segment_seconds: int,
    source: VideoInfo,
    cached_input: str | os.PathLike[str] | None = None,
    cache_output: str | os.PathLike[str] | None = None,
    threads: int = 0,
) -> list[str]:
    """Arguments for one encode unit: exactly ``chunk.frame_count`` frames of one rendition.

    The range is read by :func:`chunk_input` (a seek half a frame early, re-timed onto the
    planned frame grid, the last frame cloned if the source ends early) and ``-frames:v``
    cuts at the exact count.

    Video only (audio is encoded once per file); autorotate is ffmpeg's default, so the
    output has the display orientation and no rotation metadata; ``setsar=1`` and 8-bit
    4:2:0 for every codec; an IDR at frame 0 and a closed GOP of exactly one segment. The
    MP4 output joins losslessly with the concat demuxer for all four codecs.

    :mod:`pipeline.decoded_cache`: with ``cache_output`` the same run also writes the chunk's
    frames as they enter scaling, uncompressed, to that file (Matroska); ``cached_input`` reads
    such a file instead of the source, re-timed onto the same 1/fps grid as :func:`chunk_input`
    gives, so the encoder sees the same frames with the same timestamps either way.

    ``threads`` > 0 caps every stage's threads at the unit's share of the CPUs: the decoder's,
    the filter graph's (scaling) and the encoder's (0: ffmpeg's own choice, one or more per
    CPU each). Where every CPU already runs a unit, threads only add overhead: one thread
    each encodes the same ladder with less CPU (x264: 5 % less on 2 CPUs with 2 workers; a
    single-threaded decoder and scaler another 6-9 % of a 720p unit that decodes its chunk).
    """
    fps = Fraction(fps)
    gop = segment_frames(fps=fps, segment_seconds=segment_seconds)
    width, height = rendition_size(source=source, height=rendition.height)
    scaling = [f"scale={width}:{height}", "setsar=1", "format=yuv420p"]
    tail = [
        *_encoder_args(rendition, gop=gop),
        *(["-threads", str(threads)] if threads > 0 else []),
        "-frames:v", str(chunk.frame_count),
        "-f", "mp4", str(output_path),
    ]  # fmt: skip
    # Global options first, then the decoder's (an input option).
    capped = ["-filter_threads", str(threads), "-filter_complex_threads", str(threads)] if threads > 0 else []
    decoder = ["-threads", str(threads)] if threads > 0 else []
    if cached_input is not None:
        grid = [f"settb=expr={fps.denominator}/{fps.numerator}", "setpts=N"]
        return [
            *capped, *decoder,
            "-i", str(cached_input), "-map", "0:v:0", "-an", "-sn", "-dn",
            "-map_metadata", "-1", "-map_chapters", "-1",
            "-vf", ",".join([*grid, *scaling]), *tail,
        ]  # fmt: skip
    read = chunk_input(input_url=input_url, chunk=chunk, fps=fps, source=source)
    common = ["-an", "-sn", "-dn", "-map_metadata", "-1", "-map_chapters", "-1"]
    if cache_output is not None:
        # The probed stream by absolute index: "0:v:0" could be cover art.
        graph = (
            f"[0:{source.index}]{','.join([*read.filters, read.pad])},split=2[enc][raw];"
            f"[enc]{','.join(scaling)}[v]"
        )
        return [
            *capped, *decoder, *read.args, "-filter_complex", graph,
            "-map", "[v]", *common, *tail,
            "-map", "[raw]", *common, "-c:v", "rawvideo",
            "-frames:v", str(chunk.frame_count),
            # Matroska checksums every cluster by default; nothing reads those CRCs (the
            # cache is checked by its size) and over raw frames they cost as much CPU as
            # the rest of the write (0.65 CPU-s per 20 s of 720p, measured).
            "-f", "matroska", "-write_crc32", "0", str(cache_output),
        ]  # fmt: skip
    return [
        *capped, *decoder, *read.args,
        # The probed stream by absolute index: "0:v:0" could be cover art.
        "-map", f"0:{source.index}", *common,
        "-vf", ",".join([*read.filters, *scaling, read.pad]),
        *tail,
    ]  # fmt: skip


def build_audio_command(
    *,
    input_url: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    rendition: AudioRendition,
    stream_index: int | None = None,
    video_start_offset_s: float = 0.0,
    duration_s: float | None = None,
) -> list[str]:
    """Arguments that encode one audio rendition of the WHOLE file, once.

    Per-chunk AAC clicks and drifts at every join (priming samples), so audio never follows
    the chunking. ``video_start_offset_s`` (``VideoInfo.start_offset_s``) trims audio that
    precedes the first video frame, and ``aresample=async=1:first_pts=0`` pads audio that
    starts late with silence, so audio and the video units both start at 0.
    ``stream_index`` is ``AudioInfo.index`` (absolute); by default the first audio stream.
    ``duration_s`` (the video's planned duration) pads audio that ends early with silence and
    cuts audio that runs long, so audio and video end within one audio frame of each other.
    """
    args = _input_options(input_url, reconnect=True)
    if video_start_offset_s > 0:
        args += ["-ss", _seconds(video_start_offset_s)]
    audio_filter = "aresample=async=1:first_pts=0"
    limit: list[str] = []
    if duration_s is not None:
        audio_filter += f",apad=whole_dur={duration_s:.6f}"
        limit = ["-t", f"{duration_s:.6f}"]
    args += [
        "-i", str(input_url),
        "-map", "0:a:0" if stream_index is None else f"0:{stream_index}", "-vn", "-sn", "-dn",
        "-map_metadata", "-1", "-map_chapters", "-1",
        "-af", audio_filter, *limit,
        "-c:a", rendition.codec, "-b:a", f"{rendition.bitrate_kbps}k",
        "-ac", str(rendition.channels), "-ar", str(rendition.sample_rate),
        "-movflags", "+faststart", "-f", "mp4", str(output_path),
    ]  # fmt: skip
    return args


def write_concat_list(*, paths: Sequence[str | os.PathLike[str]], list_file: str | os.PathLike[str]) -> None:
    """Write a concat-demuxer list; quotes are escaped the way the demuxer reads them."""
    lines = []
    for path in paths:
        escaped = str(path).replace("'", "'\\''")
        lines.append(f"file '{escaped}'\n")
    Path(list_file).write_text("".join(lines), encoding="utf-8")


def concat_command(*, list_file: str | os.PathLike[str], output_path: str | os.PathLike[str]) -> list[str]:
    """Join one rendition's unit outputs, in order, without re-encoding.

    The concat demuxer re-timestamps each unit after the previous one (units all start at
    0), ``-c copy`` keeps the exact frames and GOPs, ``+faststart`` puts the index first
    for progressive playback. Units may be local files or http(s) URLs.
    """
    return [
        *concat_input_args(list_file=list_file),
        "-map", "0", "-c", "copy", "-map_metadata", "-1",
        "-movflags", "+faststart", "-f", "mp4", str(output_path),
    ]  # fmt: skip


def concat_input_args(*, list_file: str | os.PathLike[str]) -> list[str]:
    """The input side of :func:`concat_command`: the units, in order, as one input."""
    return ["-f", "concat", "-safe", "0", "-protocol_whitelist", "file,http,https,tcp,tls,crypto", "-i", str(list_file)]
