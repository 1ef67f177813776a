"""Chunk planning: split a source into frame-exact ranges aligned to segment boundaries.

Pure arithmetic (no ffmpeg, no Django) so it can be tested over thousands of durations and
frame rates in milliseconds.

Decisions, and why:

* **A segment is a whole number of frames**: ``segment_frames = round(segment_seconds * fps)``.
  At 29.97 fps a "2 s" segment is 60 frames = 2.002 s. Every encoder can then use one fixed
  integer GOP (SVT-AV1 in ffmpeg 5.1 ignores forced keyframes, so a GOP that alternated
  between 59 and 60 frames could not be honoured), and keyframes of every unit land on the
  same global frames whichever rendition or unit produced them.
* **A chunk is a whole number of segments**, so every chunk boundary is a segment boundary
  and the packager can cut segments at the unit joins.
* **Frames are counted with round-half-up** (``floor(x + 1/2)``), in exact rationals, never
  Python's banker's ``round``; the same rule is used wherever a time becomes a frame index.
* **A short tail is merged**: if the last chunk would be shorter than half a segment, it is
  appended to the previous chunk (that chunk's last GOP grows by less than half a segment).
  A unit has a fixed cost (process start, seek, encoder start-up) that a sliver of a few
  frames does not repay, and a sub-half-segment final HLS segment only makes players stall.
  The merged chunk still starts on a segment boundary; only the end of the video is not one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "Chunk",
    "frame_at",
    "planning_fps",
    "plan_chunks",
    "segment_duration_s",
    "segment_frames",
    "total_frames",
]

# Frame rates a variable-frame-rate source is snapped to when it is close to one of them:
# phone footage that averages 29.87 fps should come out at 30000/1001, not at 29.87.
_STANDARD_RATES: tuple[Fraction, ...] = (
    Fraction(24000, 1001),
    Fraction(24),
    Fraction(25),
    Fraction(30000, 1001),
    Fraction(30),
    Fraction(48),
    Fraction(50),
    Fraction(60000, 1001),
    Fraction(60),
)


@dataclass(frozen=True, slots=True)
class Chunk:
    """One encode unit's range of the source, in output frames at the planned fps.

    ``start_s``/``end_s`` are ``start_frame / fps`` and ``end_frame / fps`` (exact frame
    instants, as floats for display and for ffmpeg arguments).
    """

    index: int
    start_s: float
    end_s: float
    start_frame: int
    frame_count: int

    @property
    def end_frame(self) -> int:
        """First frame after this chunk (exclusive end)."""
        return self.start_frame + self.frame_count

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def frame_at(seconds: float | Fraction, fps: Fraction) -> int:
    """Index of the frame that starts nearest to ``seconds`` (round half up, exact)."""
    return math.floor(Fraction(seconds) * Fraction(fps) + Fraction(1, 2))


def total_frames(*, duration_s: float, fps: Fraction) -> int:
    """Frames in a constant-frame-rate source of ``duration_s`` seconds."""
    return frame_at(duration_s, fps)


def segment_frames(*, fps: Fraction, segment_seconds: int) -> int:
    """Frames per segment (and per GOP): the nominal length rounded to whole frames."""
    return max(1, frame_at(segment_seconds, fps))


def segment_duration_s(*, fps: Fraction, segment_seconds: int) -> float:
    """Actual segment duration, e.g. 2.002 s for 2 s segments at 29.97 fps.

    The packager must be told this one, not the nominal one, or its segment cuts and the
    keyframes drift apart by a frame every few hundred segments.
    """
    return float(segment_frames(fps=fps, segment_seconds=segment_seconds) / Fraction(fps))


def planning_fps(*, fps: Fraction, avg_fps: Fraction, vfr: bool) -> Fraction:
    """The constant frame rate every unit outputs.

    A constant-rate source keeps its own rate. A variable-rate source is converted to a
    constant rate (the encode units use the ``fps`` filter) so frame counts are known in
    advance: its average rate, snapped to a standard rate within 3 %, else the average
    limited to a /1001-style denominator.
    """
    if not vfr:
        return Fraction(fps)
    avg = Fraction(avg_fps)
    if avg <= 0:
        return Fraction(fps)
    nearest = min(_STANDARD_RATES, key=lambda rate: abs(rate - avg))
    if abs(nearest - avg) / nearest <= Fraction(3, 100):
        return nearest
    return avg.limit_denominator(1001)


def plan_chunks(*, duration_s: float, fps: Fraction, chunk_seconds: int, segment_seconds: int) -> list[Chunk]:
    """Split ``duration_s`` of video at ``fps`` into chunks of whole segments.

    Raises ValueError when the inputs cannot give a sensible plan: non-positive duration or
    fps, or a chunk length that is not a positive whole multiple of the segment length.
    The frame counts of the returned chunks add up to ``total_frames(duration_s, fps)``.
    """
    fps = Fraction(fps)
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not math.isfinite(duration_s) or duration_s <= 0:
        raise ValueError(f"duration must be positive, got {duration_s}")
    if segment_seconds <= 0:
        raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
    if chunk_seconds <= 0 or chunk_seconds % segment_seconds:
        raise ValueError(
            f"chunk_seconds ({chunk_seconds}) must be a positive multiple of "
            f"segment_seconds ({segment_seconds})"
        )

    total = total_frames(duration_s=duration_s, fps=fps)
    if total <= 0:
        raise ValueError(f"{duration_s} s at {fps} fps is less than one frame")
    seg = segment_frames(fps=fps, segment_seconds=segment_seconds)
    per_chunk = seg * (chunk_seconds // segment_seconds)

    starts = list(range(0, total, per_chunk))
    tail = total - starts[-1]
    if len(starts) > 1 and 2 * tail < seg:
        starts.pop()

    ends = [*starts[1:], total]
    # int / int is correctly rounded, so this is the exact instant as a float, without
    # paying for Fraction arithmetic on plans of thousands of chunks.
    num, den = fps.numerator, fps.denominator
    return [
        Chunk(
            index=index,
            start_s=start * den / num,
            end_s=end * den / num,
            start_frame=start,
            frame_count=end - start,
        )
        for index, (start, end) in enumerate(zip(starts, ends, strict=True))
    ]
