"""ffmpeg commands for quality measurement: VMAF, PSNR and SSIM of one encoded chunk against
the source frames it was made from, and the parsing of what ffmpeg writes.

Split from :mod:`pipeline.ffmpeg` like :mod:`pipeline.packaging_cmds`: these functions build
arguments through ffmpeg-python like the package's own builders (run them with
:func:`pipeline.ffmpeg.run_ffmpeg` and ``binary=tool.binary``), detect
what an ffmpeg build can measure, and read its logs. No Django here.

Method (docs/quality.md): both pictures are compared at one size, the source's display size
capped at 1080 lines (:func:`compare_size`); the rendition is upscaled to it with bicubic
scaling and the source is scaled too only when it is larger. The source range is read exactly
as the encode unit read it (:func:`pipeline.ffmpeg.chunk_input`), and both sides are numbered
frame by frame, so frame n of the encode is compared with frame n of the source. One ffmpeg run
gives every metric: libvmaf (VMAF, and PSNR from its ``psnr`` feature) when the build has
libvmaf, otherwise the ``psnr`` filter; SSIM always from the ``ssim`` filter. (libvmaf's
``float_ssim`` cost 60 % more CPU than the whole VMAF run on 720p here and gives other values
than the filter: one SSIM for every build keeps the numbers comparable. PSNR-Y from libvmaf and
from the filter agree to 0.01 dB.)
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import struct
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from pathlib import Path

import ffmpeg as ffmpeg_lib

from pipeline.chunking import Chunk
from pipeline.ffmpeg import PermanentMediaError, TransientMediaError, VideoInfo, chunk_input
from pipeline.ffmpeg.graph import Stream, compile_args
from pipeline.ffmpeg.inputs import network_options

__all__ = [
    "COMPARE_MAX_HEIGHT",
    "METRICS",
    "PSNR_MAX_DB",
    "FrameScores",
    "QcTool",
    "compare_size",
    "frames_pack",
    "frames_unpack",
    "measure_command",
    "parse_psnr_stats",
    "parse_ssim_stats",
    "parse_vmaf_log",
    "qc_tool",
    "read_scores",
    "summarize",
]

# Metric names as stored and shown: VMAF (model vmaf_v0.6.1, 0-100), PSNR of the luma plane
# (dB), SSIM of the luma plane (0-1).
METRICS = ("vmaf", "psnr", "ssim")
COMPARE_MAX_HEIGHT = 1080
# libvmaf caps 8-bit PSNR at 6 * bits + 12 = 60 dB; the psnr filter says "inf" for identical
# frames. The same cap on both keeps the numbers comparable (and finite).
PSNR_MAX_DB = 60.0
VMAF_MODEL = "vmaf_v0.6.1"
LOW_PERCENTILE = 5

VMAF_LOG = "vmaf.json"
PSNR_LOG = "psnr.log"
SSIM_LOG = "ssim.log"


# --------------------------------------------------------------------------------------
# The tool
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QcTool:
    """An ffmpeg build and what it can measure."""

    binary: str
    version: str
    has_libvmaf: bool

    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS if self.has_libvmaf else ("psnr", "ssim")

    @property
    def method(self) -> str:
        """Which implementation produced the numbers (shown next to them)."""
        if self.has_libvmaf:
            return f"libvmaf {VMAF_MODEL} (VMAF, PSNR) and the ssim filter"
        return "the psnr and ssim filters (no libvmaf in this build)"

    @property
    def label(self) -> str:
        return f"ffmpeg {self.version}, {self.method}"


def _run_quiet(argv: Sequence[str]) -> str:
    # A query of the build (-version, -filters), not a media command: no graph for ffmpeg-python.
    try:
        completed = subprocess.run(
            list(argv), capture_output=True, check=False, timeout=60, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise TransientMediaError(f"{argv[0]} could not be run on this worker: {exc}") from exc
    if completed.returncode != 0:
        tail = completed.stderr.decode(errors="replace").strip().splitlines()[-1:]
        raise TransientMediaError(f"{' '.join(argv)} failed with exit code {completed.returncode}: {tail}")
    return completed.stdout.decode(errors="replace")


@lru_cache(maxsize=8)
def qc_tool(binary: str) -> QcTool:
    """Version and libvmaf support of ``binary``, asked once per process (two quick runs)."""
    version_text = _run_quiet([binary, "-hide_banner", "-version"])
    match = re.match(r"\S+ version (\S+)", version_text)
    version = match.group(1) if match else (version_text.splitlines() or ["unknown"])[0]
    filters = _run_quiet([binary, "-hide_banner", "-filters"])
    has_libvmaf = any(line.split()[1:2] == ["libvmaf"] for line in filters.splitlines())
    return QcTool(binary=binary, version=version, has_libvmaf=has_libvmaf)


# --------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------


def _even(value: Fraction) -> int:
    return max(2, 2 * math.floor(value / 2 + Fraction(1, 2)))


def compare_size(*, display_width: int, display_height: int) -> tuple[int, int]:
    """Where the comparison happens: the source's display size, at most 1080 lines high, its
    aspect kept, both sides even (4:2:0). Renditions are never taller than the source, so they
    are only ever scaled up to it."""
    if display_width <= 0 or display_height <= 0:
        raise PermanentMediaError("the source has no picture size to compare against")
    height = min(display_height, COMPARE_MAX_HEIGHT)
    width = Fraction(display_width * height, display_height)
    return _even(width), _even(Fraction(height))


def _compared(frames: Stream, size: tuple[int, int]) -> Stream:
    """At the comparison size (bicubic), with square pixels and 8-bit 4:2:0 (what every
    rendition is)."""
    return frames.filter("scale", size[0], size[1], flags="bicubic").filter("setsar", 1).filter("format", "yuv420p")


def _numbered(frames: Stream, fps: Fraction, count: int) -> Stream:
    """Re-numbered ``pts = frame index`` and cut at ``count`` frames."""
    frames = frames.filter("settb", expr=f"{fps.denominator}/{fps.numerator}").filter("setpts", "N")
    return frames.filter("trim", end_frame=count)


def measure_command(
    *,
    distorted_url: str | os.PathLike[str],
    source_url: str | os.PathLike[str],
    chunk: Chunk,
    fps: Fraction,
    source: VideoInfo,
    size: tuple[int, int],
    tool: QcTool,
    log_dir: str | os.PathLike[str],
    threads: int = 0,
) -> list[str]:
    """Arguments that measure one encoded chunk (``distorted_url``, a unit's output: exactly
    ``chunk.frame_count`` frames from 0) against the same chunk of the source.

    Both sides are scaled to ``size`` (bicubic), given square pixels and 8-bit 4:2:0 (what
    every rendition is), re-numbered ``pts = frame index`` and cut at the planned count, so the
    metric filters pair frames by index, never by a rounded timestamp. The logs go to
    ``log_dir`` (:func:`read_scores` reads them).
    """
    fps = Fraction(fps)
    log_dir = Path(log_dir)
    # The same network options (timeouts, reconnects) as every other read.
    distorted = ffmpeg_lib.input(str(distorted_url), **network_options(distorted_url, reconnect=True))["v:0"]
    distorted = _numbered(_compared(distorted, size), fps, chunk.frame_count)
    read = chunk_input(input_url=source_url, chunk=chunk, fps=fps, source=source)
    reference = read.padding.on(_compared(read.open(str(source.index)), size))
    reference = _numbered(reference, fps, chunk.frame_count)
    # Each metric filter passes its first input through: they are chained on the distorted
    # frames, the reference split between them.
    references = reference.split()
    if tool.has_libvmaf:
        n_threads = {"n_threads": str(threads)} if threads > 0 else {}
        measured = ffmpeg_lib.filter(
            [distorted, references[0]], "libvmaf", model=f"version={VMAF_MODEL}", feature="name=psnr",
            log_fmt="json", log_path=str(log_dir / VMAF_LOG), shortest="1", **n_threads,
        )  # fmt: skip
    else:
        measured = ffmpeg_lib.filter([distorted, references[0]], "psnr", stats_file=str(log_dir / PSNR_LOG), shortest="1")
    measured = ffmpeg_lib.filter([measured, references[1]], "ssim", stats_file=str(log_dir / SSIM_LOG), shortest="1")
    return compile_args(measured.output("-", format="null", an=None, sn=None, dn=None))


# --------------------------------------------------------------------------------------
# Reading the logs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameScores:
    """Per-frame values of each measured metric, in frame order."""

    values: dict[str, list[float]]

    @property
    def frames(self) -> int:
        return max((len(v) for v in self.values.values()), default=0)


def _psnr(value: float) -> float:
    return PSNR_MAX_DB if math.isinf(value) or value > PSNR_MAX_DB else value


def parse_vmaf_log(text: str) -> dict[str, list[float]]:
    """libvmaf's JSON log: per frame ``vmaf`` and ``psnr_y``."""
    try:
        data = json.loads(text)
        frames = sorted(data["frames"], key=lambda f: f["frameNum"])
        return {
            "vmaf": [float(f["metrics"]["vmaf"]) for f in frames],
            "psnr": [_psnr(float(f["metrics"]["psnr_y"])) for f in frames],
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise PermanentMediaError(f"libvmaf wrote a log that cannot be read: {exc}") from exc


_STATS_FIELD = re.compile(r"(\w+):(\S+)")


def _stats_lines(text: str, field: str) -> list[float]:
    values = []
    for line in text.splitlines():
        fields = dict(_STATS_FIELD.findall(line))
        if "n" not in fields:
            continue
        try:
            values.append(float(fields[field]))
        except (KeyError, ValueError) as exc:
            raise PermanentMediaError(f"unreadable quality stats line {line!r}") from exc
    return values


def parse_psnr_stats(text: str) -> list[float]:
    """The psnr filter's stats file: ``psnr_y`` per frame ("inf" for identical frames)."""
    return [_psnr(v) for v in _stats_lines(text, "psnr_y")]


def parse_ssim_stats(text: str) -> list[float]:
    """The ssim filter's stats file: ``Y`` (luma SSIM) per frame."""
    return _stats_lines(text, "Y")


def read_scores(*, tool: QcTool, log_dir: str | os.PathLike[str], expected_frames: int) -> FrameScores:
    """Per-frame values from the logs of one :func:`measure_command` run. A frame count other
    than the chunk's means the two sides did not pair up: a permanent error, never a score."""
    log_dir = Path(log_dir)
    try:
        if tool.has_libvmaf:
            values = parse_vmaf_log((log_dir / VMAF_LOG).read_text())
        else:
            values = {"psnr": parse_psnr_stats((log_dir / PSNR_LOG).read_text())}
        values["ssim"] = parse_ssim_stats((log_dir / SSIM_LOG).read_text())
    except FileNotFoundError as exc:
        raise PermanentMediaError(
            f"ffmpeg finished without writing its quality log ({exc.filename})"
        ) from exc
    for metric, series in values.items():
        if len(series) != expected_frames:
            raise PermanentMediaError(
                f"{metric} was measured on {len(series)} frames, the chunk has {expected_frames}: "
                "the encode and the source did not pair up frame by frame"
            )
    return FrameScores(values=values)


# --------------------------------------------------------------------------------------
# Numbers
# --------------------------------------------------------------------------------------


def _percentile(sorted_values: Sequence[float], percent: float) -> float:
    """Linear interpolation between closest ranks (numpy's default), on sorted values."""
    if len(sorted_values) == 1:
        return sorted_values[0]
    position = (len(sorted_values) - 1) * percent / 100
    low = math.floor(position)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (position - low)


def summarize(values: Iterable[float]) -> dict[str, float]:
    """Mean, 5th percentile and minimum of one metric over frames."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("no frames to summarize")
    return {
        "mean": math.fsum(ordered) / len(ordered),
        "p5": _percentile(ordered, LOW_PERCENTILE),
        "min": ordered[0],
    }


def frames_pack(values: Sequence[float]) -> str:
    """Per-frame values as base64 of little-endian float32: 4 bytes a frame, exact enough
    for any of these metrics (7 significant digits)."""
    return base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode("ascii")


def frames_unpack(text: str) -> list[float]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))
