"""ffmpeg commands for quality measurement: VMAF, PSNR and SSIM of encoded chunks against the
source frames they were made from, and the parsing of what ffmpeg writes.

Split from :mod:`pipeline.ffmpeg` like :mod:`pipeline.packaging_cmds`: these functions build
arguments through ffmpeg-python like the package's own builders (run them with
:func:`pipeline.ffmpeg.run_ffmpeg` and ``binary=tool.binary``), detect
what an ffmpeg build can measure, and read its logs. No Django here.

Method (docs/quality.md): both pictures are compared at one size, the source's display size
capped at 1080 lines (:func:`compare_size`); the rendition is upscaled to it with bicubic
scaling and the source is scaled too only when it is larger. The source range is read exactly
as the encode unit read it (:func:`pipeline.ffmpeg.chunk_input`, or the unit's decoded copy of
it), and both sides are numbered frame by frame, so frame n of the encode is compared with
frame n of the source. Frames are scored on a sample: every ``step``-th frame of the chunk
(:func:`frame_step`), each scored exactly as a full measurement scores it (VMAF's motion
feature sees the frame before and after, :func:`sampled`). One ffmpeg run measures one chunk
of up to a batch of renditions against one read of the source, and gives every metric:
libvmaf (VMAF, and PSNR from its ``psnr`` feature) when the build has libvmaf, otherwise the
``psnr`` filter; SSIM always from the ``ssim`` filter. (libvmaf's ``float_ssim`` cost 60 % more
CPU than the whole VMAF run on 720p here and gives other values than the filter: one SSIM for
every build keeps the numbers comparable. PSNR-Y from libvmaf and from the filter agree to
0.01 dB.)
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
from dataclasses import dataclass, replace
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
    "frame_step",
    "frames_pack",
    "frames_unpack",
    "index_pack",
    "index_unpack",
    "log_file",
    "measure_command",
    "sample_offset",
    "sampled_indices",
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
# The smallest side libvmaf is given (see QcTool.at).
VMAF_MIN_SIDE = 32
LOW_PERCENTILE = 5

VMAF_LOG = "vmaf.json"
PSNR_LOG = "psnr.log"
SSIM_LOG = "ssim.log"
# The smallest step that samples (frame_step() picks steps coprime with 6: 5, 7, 11, 13...).
MIN_STEP = 5


# --------------------------------------------------------------------------------------
# The tool
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QcTool:
    """An ffmpeg build and what it can measure (``vmaf_skipped``: why this measurement takes
    no VMAF although the build has libvmaf)."""

    binary: str
    version: str
    has_libvmaf: bool
    vmaf_skipped: str = ""

    @property
    def metrics(self) -> tuple[str, ...]:
        return METRICS if self.has_libvmaf else ("psnr", "ssim")

    @property
    def method(self) -> str:
        """Which implementation produced the numbers (shown next to them)."""
        if self.has_libvmaf:
            return f"libvmaf {VMAF_MODEL} (VMAF, PSNR) and the ssim filter"
        if self.vmaf_skipped:
            return f"the psnr and ssim filters ({self.vmaf_skipped})"
        return "the psnr and ssim filters (no libvmaf in this build)"

    def at(self, size: tuple[int, int]) -> QcTool:
        """This tool for a comparison at ``size``: without VMAF below ``VMAF_MIN_SIDE`` pixels
        (libvmaf crashed with SIGSEGV on 16-pixel sides here, which RQ would retry for minutes
        before the measurement failed; 18 worked)."""
        if self.has_libvmaf and min(size) < VMAF_MIN_SIDE:
            return replace(
                self, has_libvmaf=False, vmaf_skipped=f"no VMAF for pictures under {VMAF_MIN_SIDE} pixels"
            )
        return self

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


def frame_step(*, total_frames: int, max_step: int, min_frames: int, gop: int = 0) -> int:
    """How far apart the scored frames are: the largest step up to ``max_step`` that still
    scores at least ``min_frames`` frames of the whole rendition (``total_frames`` long) and
    shares no factor with 6 nor with the keyframe interval ``gop``: a step of 20 with keyframes
    every 100 frames scored every keyframe (a fifth of the sample, a hundredth of the frames)
    and read PSNR 0.5 dB high; a step coprime with both visits every position in the GOP and
    in the encoder's 2-4 frame B-frame patterns alike. 1, every frame, when no step of at least
    5 does (a short title costs little anyway)."""
    bound = min(max_step, total_frames // max(1, min_frames))
    for step in range(bound, MIN_STEP - 1, -1):
        if math.gcd(step, 6) == 1 and (gop <= 0 or math.gcd(step, gop) == 1):
            return step
    return 1


def sample_offset(frame_count: int, step: int) -> int:
    """The first scored frame of a chunk: half a step in, so that neither the chunk's first
    frame (an IDR, whose VMAF motion restarts at 0) nor any frame at a fixed place after it is
    over-represented. 0 for steps below 7 (too short to keep the neighbours of frame 0 apart
    from the first sample's) and chunks too short for it."""
    offset = step // 2 if step >= 7 else 0
    return offset if offset < frame_count else 0


def sampled_indices(frame_count: int, step: int) -> list[int]:
    """The frames of a chunk that are scored: every ``step``-th from :func:`sample_offset`
    (every frame for step 1)."""
    if step <= 1:
        return list(range(frame_count))
    return list(range(sample_offset(frame_count, step), frame_count, step))


def _compared(frames: Stream, size: tuple[int, int]) -> Stream:
    """At the comparison size (bicubic), with square pixels and 8-bit 4:2:0 (what every
    rendition is)."""
    return frames.filter("scale", size[0], size[1], flags="bicubic").filter("setsar", 1).filter("format", "yuv420p")


def _numbered(frames: Stream, fps: Fraction, count: int) -> Stream:
    """Re-numbered ``pts = frame index`` and cut at ``count`` frames."""
    frames = frames.filter("settb", expr=f"{fps.denominator}/{fps.numerator}").filter("setpts", "N")
    return frames.filter("trim", end_frame=count)


def _sampled(frames: Stream, step: int, offset: int, *, neighbours: bool) -> Stream:
    """The frames kept for scoring, chosen by index *after* the numbering, so both sides keep
    the same ones: ``offset + k step`` (:func:`sampled_indices`).

    With ``neighbours`` (for libvmaf) each scored frame comes with the frames just before and
    after it, and the stream starts with frames 0 and 1: VMAF's motion feature of frame n is
    the smaller of its difference to frame n - 1 and frame n + 1's to it, and libvmaf scores
    every third frame of this stream (``n_subsample=3``): the stream's frame 0 (the chunk's
    frame 0, scored as in a full measurement and left out of the sample when ``offset`` > 0),
    then 3, 6, ... which are the middles of the triples. So every sampled frame gets exactly
    the value a measurement of every frame gives it, only a third of the frames kept (a
    ``step``-th of the chunk's) pays for VMAF's costly features, and the rest of the chunk is
    neither scaled nor compared."""
    if step <= 1:
        return frames
    if not neighbours:
        return frames.filter("select", f"not(mod(n-{offset},{step}))")
    if offset == 0:  # 0, 1 | step-1, step, step+1 | ...
        return frames.filter("select", f"lt(mod(n+1,{step}),3)")
    # 0, 1 | offset-1, offset, offset+1 | offset+step-1, ...: frames before offset-1 fall on
    # step-offset+2 .. step-1 (offset >= 3 keeps them off 0..2).
    return frames.filter("select", f"if(lt(n,2),1,lt(mod(n-{offset - 1},{step}),3))")


def log_file(log_dir: str | os.PathLike[str], name: str, index: int = 0) -> Path:
    """Where the measurement of the ``index``-th distorted input writes log ``name``."""
    return Path(log_dir) / f"{index}-{name}"


def measure_command(
    *,
    distorted_urls: Sequence[str | os.PathLike[str]],
    source_url: str | os.PathLike[str],
    chunk: Chunk,
    fps: Fraction,
    source: VideoInfo,
    size: tuple[int, int],
    tool: QcTool,
    log_dir: str | os.PathLike[str],
    threads: int = 0,
    step: int = 1,
    cached_source: str | os.PathLike[str] | None = None,
) -> list[str]:
    """Arguments that measure encoded chunks (``distorted_urls``, the outputs of units of one
    chunk: each exactly ``chunk.frame_count`` frames from 0) against the same chunk of the
    source, read once for all of them.

    The source range is read as the units read it (:func:`pipeline.ffmpeg.chunk_input`), or
    from ``cached_source``, a unit's decoded copy of it (:mod:`pipeline.decoded_cache`: the
    same frames, already on the planned grid and padded). Both sides are re-numbered ``pts =
    frame index`` and cut at the planned count, so the metric filters pair frames by index,
    never by a rounded timestamp; then sampled (every ``step``-th frame is scored, see
    :func:`_sampled`), scaled to ``size`` (bicubic), given square pixels and 8-bit 4:2:0 (what
    every rendition is). The logs of the i-th input go to ``log_dir`` (:func:`log_file`,
    :func:`read_scores` reads them). ``threads`` > 0 caps the decoders, the filter graph and
    libvmaf at that many threads each.
    """
    if step != 1 and step < MIN_STEP:
        raise ValueError(f"a sampling step is 1 (every frame) or at least {MIN_STEP}, not {step}")
    fps = Fraction(fps)
    capped = {"threads": str(threads)} if threads > 0 else {}
    neighbours = tool.has_libvmaf
    if cached_source is not None:
        reference = ffmpeg_lib.input(str(cached_source), **capped)["v:0"]
    else:
        read = chunk_input(input_url=source_url, chunk=chunk, fps=fps, source=source)
        reference = read.padding.on(read.open(str(source.index), **capped))
    offset = sample_offset(chunk.frame_count, step)
    reference = _compared(
        _sampled(_numbered(reference, fps, chunk.frame_count), step, offset, neighbours=neighbours), size
    )
    # Each metric filter passes its first input through: they are chained on the distorted
    # frames, the reference split between them (two branches per rendition).
    references = reference.split()
    outputs = []
    for i, url in enumerate(distorted_urls):
        # The same network options (timeouts, reconnects) as every other read.
        distorted = ffmpeg_lib.input(str(url), **network_options(url, reconnect=True), **capped)["v:0"]
        distorted = _compared(
            _sampled(_numbered(distorted, fps, chunk.frame_count), step, offset, neighbours=neighbours), size
        )
        reference_a, reference_b = references[2 * i], references[2 * i + 1]
        if tool.has_libvmaf:
            options = {"n_threads": str(threads)} if threads > 0 else {}
            if step > 1:
                options["n_subsample"] = "3"  # the middle frame of each kept triple
            measured = ffmpeg_lib.filter(
                [distorted, reference_a], "libvmaf", model=f"version={VMAF_MODEL}", feature="name=psnr",
                log_fmt="json", log_path=str(log_file(log_dir, VMAF_LOG, i)), shortest="1", **options,
            )  # fmt: skip
            if step > 1:  # SSIM of the same frames VMAF scored
                measured = measured.filter("select", "not(mod(n,3))")
                reference_b = reference_b.filter("select", "not(mod(n,3))")
        else:
            measured = ffmpeg_lib.filter(
                [distorted, reference_a], "psnr", stats_file=str(log_file(log_dir, PSNR_LOG, i)), shortest="1"
            )
        measured = ffmpeg_lib.filter(
            [measured, reference_b], "ssim", stats_file=str(log_file(log_dir, SSIM_LOG, i)), shortest="1"
        )
        outputs.append(measured.output("-", format="null", an=None, sn=None, dn=None))
    return compile_args(*outputs, global_options={"filter_complex_threads": str(threads)} if threads > 0 else None)


# --------------------------------------------------------------------------------------
# Reading the logs
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FrameScores:
    """Per-frame values of each measured metric for the scored frames, whose indices in the
    chunk are ``indices`` (every frame, or every ``step``-th)."""

    values: dict[str, list[float]]
    indices: list[int]

    @property
    def frames(self) -> int:
        return len(self.indices)


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


def read_scores(
    *, tool: QcTool, log_dir: str | os.PathLike[str], frame_count: int, step: int = 1, index: int = 0
) -> FrameScores:
    """Per-frame values from the logs of the ``index``-th input of one :func:`measure_command`
    run over a chunk of ``frame_count`` frames sampled every ``step``. Another number of
    scored frames than the sample has means the two sides did not pair up: a permanent error,
    never a score."""
    indices = sampled_indices(frame_count, step)
    try:
        if tool.has_libvmaf:
            values = parse_vmaf_log(log_file(log_dir, VMAF_LOG, index).read_text())
        else:
            values = {"psnr": parse_psnr_stats(log_file(log_dir, PSNR_LOG, index).read_text())}
        values["ssim"] = parse_ssim_stats(log_file(log_dir, SSIM_LOG, index).read_text())
    except FileNotFoundError as exc:
        raise PermanentMediaError(
            f"ffmpeg finished without writing its quality log ({exc.filename})"
        ) from exc
    if tool.has_libvmaf and step > 1 and indices and indices[0] > 0:
        # libvmaf also scored the chunk's frame 0, which leads the stream (see _sampled).
        values = {metric: series[1:] for metric, series in values.items()}
    for metric, series in values.items():
        if len(series) != len(indices):
            raise PermanentMediaError(
                f"{metric} was measured on {len(series)} frames, the chunk's sample has {len(indices)} "
                f"({frame_count} frames, every {step}): the encode and the source did not pair up frame by frame"
            )
    return FrameScores(values=values, indices=indices)


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


def index_pack(indices: Sequence[int]) -> str:
    """Frame indices as base64 of little-endian uint32 (beside the values of sampled frames)."""
    return base64.b64encode(struct.pack(f"<{len(indices)}I", *indices)).decode("ascii")


def index_unpack(text: str) -> list[int]:
    raw = base64.b64decode(text)
    return list(struct.unpack(f"<{len(raw) // 4}I", raw))
