"""What a source really holds, beyond what its header declares: the video packets' timeline
(how many frames, where they end, whether the clock jumps back), whether a frame decodes at
all, and a copy of the source with its timestamps made continuous.

Why: a transport stream of two recordings joined end to end declares the first recording's
duration (its timestamps jump back to zero halfway); a camera's file may declare less than
its frames run for; a container without an index (TS, Matroska, WebM) only estimates. A plan
made from the header loses the rest. The packet scan reads the file's packets without
decoding them (seconds for a file that takes minutes to encode).
"""

from __future__ import annotations

import os
import shlex
import statistics
import subprocess
from dataclasses import dataclass, replace
from fractions import Fraction

from pipeline.ffmpeg.errors import TransientMediaError, _decode, _tail_text, classify_failure
from pipeline.ffmpeg.inputs import _input_options
from pipeline.ffmpeg.mediainfo import MediaInfo, _is_vfr
from pipeline.ffmpeg.running import run_ffmpeg
from pipeline.ffmpeg.versions import ffprobe_binary

# A decode timestamp that goes back by more than this is a clock reset, not B-frame reordering.
RESET_BACK_S = 0.5


@dataclass(frozen=True, slots=True)
class Timeline:
    """The video stream's packets, in file order."""

    packets: int
    first_s: float  # earliest presentation time
    end_s: float  # latest presentation time plus that packet's duration
    resets: int  # times the decode clock jumped back by more than RESET_BACK_S
    median_interval_s: float | None

    @property
    def duration_s(self) -> float:
        return max(0.0, self.end_s - self.first_s)


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def scan(url_or_path: str | os.PathLike[str], *, stream_index: int, timeout: float = 600) -> Timeline:
    """Read every packet of one video stream (no decoding): count, extent, clock resets."""
    argv = [
        ffprobe_binary(), "-hide_banner", "-v", "error", *_input_options(url_or_path, reconnect=False),
        "-select_streams", str(stream_index), "-show_entries", "packet=pts_time,dts_time,duration_time",
        "-of", "csv=p=0", str(url_or_path),
    ]  # fmt: skip
    command = shlex.join(argv)
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired as exc:
        raise TransientMediaError(f"reading the source's packets took over {timeout:g} s", command=command) from exc
    if done.returncode != 0:
        tail = _tail_text(_decode(done.stderr).splitlines())
        raise classify_failure(returncode=done.returncode, stderr_tail=tail, command=command, program="ffprobe")
    packets, resets = 0, 0
    first, end, last_dts = None, None, None
    pts_seen: list[float] = []
    for line in _decode(done.stdout).splitlines():
        line = line.strip().rstrip(",")
        if not line:  # ffprobe writes an empty line after each packet's side data
            continue
        fields = [_float(f) for f in line.split(",")]
        pts, dts, length = (fields + [None, None, None])[:3]
        packets += 1
        clock = dts if dts is not None else pts
        if clock is not None and last_dts is not None and clock < last_dts - RESET_BACK_S:
            resets += 1
        if clock is not None:
            last_dts = clock
        if pts is not None:
            pts_seen.append(pts)
            first = pts if first is None else min(first, pts)
            end = max(end or pts, pts + (length or 0.0))
    ordered = sorted(pts_seen)
    gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False) if b > a]
    return Timeline(
        packets=packets, first_s=first or 0.0, end_s=end or 0.0, resets=resets,
        median_interval_s=statistics.median(gaps) if gaps else None,
    )  # fmt: skip


def packets_per_frame(timeline: Timeline, fps: Fraction) -> int:
    """2 when the packets come twice per frame period (interlaced video coded as separate
    field pictures, as some AVCHD cameras write it), else 1."""
    if fps <= 0 or not timeline.median_interval_s:
        return 1
    return 2 if 1.8 < 1 / (float(fps) * timeline.median_interval_s) < 2.2 else 1


def with_timeline(info: MediaInfo, timeline: Timeline) -> MediaInfo:
    """The probe with the video's frame count and duration taken from its packets (what
    decodes), and VFR judged again from them."""
    video = info.video
    if video is None or timeline.packets == 0 or timeline.resets:
        return info
    duration = timeline.duration_s
    frames = round(timeline.packets / packets_per_frame(timeline, video.fps))
    vfr = _is_vfr(fps=video.fps, avg_fps=video.avg_fps, frames=frames, duration=duration)
    avg = Fraction(frames) / Fraction(duration).limit_denominator(1_000_000) if duration > 0 else video.avg_fps
    video = replace(video, frame_count=frames, duration_s=duration, vfr=vfr, avg_fps=avg if vfr else video.avg_fps)
    return replace(info, video=video, duration=max(info.duration or 0.0, duration))


def first_frame_decodes(url_or_path: str | os.PathLike[str], *, stream_index: int, timeout: float = 120) -> bool:
    """Whether at least one frame of the stream decodes (a header can describe frames whose
    data is gone). Raises the classified error when ffmpeg fails in another way."""
    frames = []
    run_ffmpeg(
        [*_input_options(url_or_path, reconnect=True), "-i", str(url_or_path), "-map", f"0:{stream_index}",
         "-frames:v", "1", "-f", "null", "-"],
        on_progress=lambda p: frames.append(p.frame), timeout=timeout,
    )  # fmt: skip
    return bool(frames and max(frames) >= 1)


def rebase_copy(
    url_or_path: str | os.PathLike[str], output_path: str | os.PathLike[str], *, stream_index: int, timeout: float = 900
) -> None:
    """Copy the video (and the first audio) stream, not re-encoded, into Matroska with
    continuous timestamps: ffmpeg moves every part after a clock reset to follow the part
    before it (its correction for transport-stream discontinuities)."""
    run_ffmpeg(
        [*_input_options(url_or_path, reconnect=True), "-i", str(url_or_path), "-map", f"0:{stream_index}",
         "-map", "0:a:0?", "-c", "copy", "-sn", "-dn", "-map_metadata", "-1", "-f", "matroska", str(output_path)],
        timeout=timeout,
    )  # fmt: skip
