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
* **The chunk length is planned for the fleet** (:func:`plan_for_fleet`): enough chunks that
  every encode slot has work (``chunks_per_slot`` per slot, so the queue order can balance the
  rungs), never fewer than ``min_segments`` segments each, never more than the upper bound
  (``REELFLOW_CHUNK_SECONDS``), spread evenly over the segments (so no chunk is a sliver).
* **A boundary may move to a scene change** (:func:`refine_cuts`): among the segment boundaries
  within a few segments of a planned cut, the one nearest a strong scene change, as long as
  both chunks it separates stay within the bounds. Boundaries stay on segment boundaries, so the
  keyframes of every rung stay aligned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

__all__ = [
    "Boundary",
    "Chunk",
    "ChunkPlan",
    "SceneChange",
    "plan_for_fleet",
    "refine_cuts",
    "scene_candidates",
    "frame_at",
    "kept_boundaries",
    "plan_summary",
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
    advance: its average rate, snapped to a standard rate within 3 %, else the whole rate
    at or above the average (at most 60).
    """
    if not vfr:
        return Fraction(fps)
    avg = Fraction(avg_fps)
    if avg <= 0:
        return Fraction(fps)
    nearest = min(_STANDARD_RATES, key=lambda rate: abs(rate - avg))
    if abs(nearest - avg) / nearest <= Fraction(3, 100):
        return nearest
    # Far from every standard rate (a phone's 84 frames over 11.35 s): the next whole rate
    # up, so no source frame is dropped on average and segments are whole milliseconds
    # (7.40 fps as 7.40088... made 4.055 s segments that timestamps rounded past).
    return Fraction(min(60, max(1, math.ceil(avg))))


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


# --------------------------------------------------------------------------------------
# Planning for the fleet
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChunkPlan:
    """Where each chunk starts, counted in segments, with the inputs that put it there.

    ``segments`` counts whole segments, and a final partial segment when it is at least half a
    segment long (a shorter one rides with the last segment: the short-tail rule). ``cuts`` are
    the segments the chunks after the first start at, ascending. ``rule`` is ``"fleet"`` (sized
    to the encode slots) or ``"fixed"`` (every chunk ``max_segments`` long, the tail merged as
    :func:`plan_chunks` does).
    """

    fps: Fraction
    total_frames: int
    segment_frames: int
    segments: int
    cuts: tuple[int, ...]
    rule: str
    why: str
    slots: int
    chunks_per_slot: int
    min_segments: int
    max_segments: int

    def chunks(self, cuts: tuple[int, ...] | list[int] | None = None) -> list[Chunk]:
        """The frame ranges of the chunks starting at ``cuts`` (default: the planned ones)."""
        starts = [0, *(k * self.segment_frames for k in (self.cuts if cuts is None else cuts))]
        ends = [*starts[1:], self.total_frames]
        num, den = self.fps.numerator, self.fps.denominator
        return [
            Chunk(
                index=i,
                start_s=start * den / num,
                end_s=end * den / num,
                start_frame=start,
                frame_count=end - start,
            )
            for i, (start, end) in enumerate(zip(starts, ends, strict=True))
        ]

    def lengths(self, cuts: tuple[int, ...] | list[int] | None = None) -> list[int]:
        """Each chunk's length in segments (the last counts its partial segment as one)."""
        edges = [0, *(self.cuts if cuts is None else cuts), self.segments]
        return [b - a for a, b in zip(edges, edges[1:], strict=False)]

    def seconds_at(self, segment: int) -> float:
        return float(Fraction(segment * self.segment_frames) / self.fps)


def _segments(total: int, seg: int) -> int:
    whole, rest = divmod(total, seg)
    return max(1, whole + (1 if rest and 2 * rest >= seg else 0))


def plan_for_fleet(
    *,
    duration_s: float,
    fps: Fraction,
    segment_seconds: int,
    max_chunk_seconds: int,
    min_segments: int,
    slots: int,
    chunks_per_slot: int,
    scene_window: int = 0,
) -> ChunkPlan:
    """The chunk plan for a source on ``slots`` encode slots. Deterministic in its arguments.

    * ``chunks_per_slot`` chunks are wanted per slot (at least one slot is assumed);
    * each chunk has at least ``min_segments`` segments, so fewer chunks when the source is
      short (a source shorter than that is one chunk);
    * each has at most ``max_chunk_seconds``, less ``scene_window`` segments of room for
      :func:`refine_cuts` to move a boundary without breaking the bound; this upper bound wins
      over the others (a long title gets as many chunks as it needs);
    * the segments are spread evenly: chunk lengths differ by at most one segment, the longer
      ones first.

    ``chunks_per_slot`` 0 asks for the fixed plan instead (every chunk ``max_chunk_seconds``,
    as :func:`plan_chunks`), and so does an upper bound shorter than the minimum: the operator
    then asked for chunks that short.
    """
    fps = Fraction(fps)
    # plan_chunks checks every argument the same way and gives the fixed plan's ranges.
    fixed = plan_chunks(
        duration_s=duration_s, fps=fps, chunk_seconds=max_chunk_seconds, segment_seconds=segment_seconds
    )
    if min_segments < 1:
        raise ValueError(f"min_segments must be at least 1, got {min_segments}")
    total = sum(c.frame_count for c in fixed)
    seg = segment_frames(fps=fps, segment_seconds=segment_seconds)
    segments = _segments(total, seg)
    max_segments = max_chunk_seconds // segment_seconds
    slots = max(1, slots)
    common = {
        "fps": fps, "total_frames": total, "segment_frames": seg, "segments": segments, "slots": slots,
        "chunks_per_slot": chunks_per_slot, "min_segments": min_segments, "max_segments": max_segments,
    }  # fmt: skip
    if chunks_per_slot <= 0 or max_segments < min_segments:
        why = (
            "REELFLOW_CHUNKS_PER_SLOT is 0: fixed length"
            if chunks_per_slot <= 0
            else f"fixed length: the upper bound ({max_segments} segments) is below the minimum ({min_segments})"
        )
        cuts = tuple(c.start_frame // seg for c in fixed[1:])
        return ChunkPlan(cuts=cuts, rule="fixed", why=why, **common)

    wanted = slots * chunks_per_slot
    fit = max(1, segments // min_segments)  # most chunks of at least min_segments
    # Room under the upper bound for a scene move, unless taking it would break the minimum.
    plan_max = max(min_segments, max_segments - max(0, scene_window))
    if -(-segments // plan_max) > fit:
        plan_max = max_segments
    needed = -(-segments // plan_max)  # fewest chunks of at most plan_max
    count = max(needed, min(wanted, fit))
    step, longer = divmod(segments, count)
    cuts = tuple(i * step + min(i, longer) for i in range(1, count))

    asked = f"{wanted} wanted ({chunks_per_slot} per slot × {slots} slot{'s' if slots != 1 else ''})"
    if count == needed and needed > min(wanted, fit):
        room = (
            f" ({max_segments} less {max_segments - plan_max} of room for scene moves)"
            if plan_max < max_segments
            else ""
        )
        why = f"{asked}; {segments} segments need {needed} of at most {plan_max}{room}"
    elif count < wanted:
        why = f"{asked}; {segments} segments hold {fit} of at least {min_segments}"
    else:
        why = asked
    return ChunkPlan(cuts=cuts, rule="fleet", why=why, **common)


@dataclass(frozen=True, slots=True)
class SceneChange:
    """The strongest picture change near a boundary: ``frame`` is the first frame of the new
    picture, ``score`` ffmpeg's scene score (0: the same picture, 1: nothing in common)."""

    frame: int
    score: float


@dataclass(frozen=True, slots=True)
class Boundary:
    """Where one chunk boundary was planned and where it is (both in segments), and why."""

    planned: int
    chosen: int
    change: SceneChange | None
    note: str


def _fits(plan: ChunkPlan, length: int) -> bool:
    return plan.min_segments <= length <= plan.max_segments


def scene_candidates(plan: ChunkPlan, *, window: int) -> list[list[int]]:
    """Per planned cut, the segment boundaries it could move to (itself included, ascending):
    within ``window`` segments, inside the source, and leaving both chunks it separates within
    the bounds for some position of the cut before it and the planned position of the next.
    A fixed plan, or a window of 0, moves nothing."""
    if plan.rule != "fleet" or window <= 0:
        return [[p] for p in plan.cuts]
    result: list[list[int]] = []
    before = [0]
    for i, planned in enumerate(plan.cuts):
        after = plan.cuts[i + 1] if i + 1 < len(plan.cuts) else plan.segments
        options = [
            k for k in range(max(1, planned - window), min(plan.segments - 1, planned + window) + 1)
            if k == planned or (_fits(plan, after - k) and any(_fits(plan, k - b) for b in before))
        ]  # fmt: skip
        result.append(options)
        before = options
    return result


def _at(plan: ChunkPlan, segment: int) -> str:
    return _seconds_text(plan.seconds_at(segment))


def _seconds_text(seconds: float) -> str:
    return f"{seconds:.3f}".rstrip("0").rstrip(".") + " s"


def refine_cuts(
    plan: ChunkPlan,
    *,
    candidates: list[list[int]],
    changes: dict[int, SceneChange],
    threshold: float,
    window: int,
) -> list[Boundary]:
    """Each planned cut, moved to the candidate boundary with the strongest scene change of at
    least ``threshold`` (``changes`` by segment), or kept. Left to right: a move must keep the
    chunk before it (from the cut already chosen) and the chunk after it (to the next cut as
    planned) within the bounds, so keeping a cut is always possible. Ties go to the candidate
    nearest the planned cut, then the earlier one."""
    boundaries: list[Boundary] = []
    previous = 0
    for i, (planned, options) in enumerate(zip(plan.cuts, candidates, strict=True)):
        after = plan.cuts[i + 1] if i + 1 < len(plan.cuts) else plan.segments
        allowed = [
            k for k in options if k == planned or (_fits(plan, k - previous) and _fits(plan, after - k))
        ]
        strong = [k for k in allowed if (c := changes.get(k)) is not None and c.score >= threshold]
        if strong:
            chosen = max(strong, key=lambda k: (changes[k].score, -abs(k - planned), -k))
            change = changes[chosen]
            detail = (
                f"scene change (score {change.score:.2f}) at {_seconds_text(float(change.frame / plan.fps))}"
            )
            if chosen == planned:
                note = f"kept at {_at(plan, planned)}: {detail}"
            else:
                note = f"planned at {_at(plan, planned)}, moved to {_at(plan, chosen)}: {detail}"
        else:
            chosen, change = planned, None
            span = f"±{window} segment{'s' if window != 1 else ''}"
            if len(allowed) > 1:
                note = f"kept at {_at(plan, planned)}: no scene change of {threshold:g} or more within {span}"
            else:
                note = f"kept at {_at(plan, planned)}: no room within {span} (the chunks beside it are at their bounds)"
        boundaries.append(Boundary(planned=planned, chosen=chosen, change=change, note=note))
        previous = chosen
    return boundaries


def kept_boundaries(plan: ChunkPlan, *, reason: str) -> list[Boundary]:
    """Every planned cut kept, for ``reason`` (no scene analysis, or a failed one)."""
    return [
        Boundary(planned=p, chosen=p, change=None, note=f"kept at {_at(plan, p)}: {reason}")
        for p in plan.cuts
    ]


def plan_summary(plan: ChunkPlan, cuts: tuple[int, ...] | list[int] | None = None) -> str:
    """One line: how many chunks of what length, and why, e.g. "5 chunks of 12 s: 6 wanted..."."""
    lengths = [c.duration_s for c in plan.chunks(cuts)]
    low, high = _seconds_text(min(lengths)), _seconds_text(max(lengths))
    span = low if low == high else f"{low.removesuffix(' s')}–{high}"
    count = len(lengths)
    return f"{count} chunk{'s' if count != 1 else ''} of {span}: {plan.why}"
