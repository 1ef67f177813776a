"""Chunk planning is pure arithmetic: checked as properties over many durations and rates."""

import random
from fractions import Fraction

import pytest

from pipeline.chunking import (
    frame_at,
    plan_chunks,
    planning_fps,
    segment_duration_s,
    segment_frames,
    total_frames,
)

RATES = [
    Fraction(24000, 1001), Fraction(24), Fraction(25), Fraction(30000, 1001), Fraction(30),
    Fraction(50), Fraction(60000, 1001), Fraction(60), Fraction(15), Fraction(12, 1),
    Fraction(2997, 100), Fraction(1, 2), Fraction(120),
]  # fmt: skip
LAYOUTS = [(2, 2), (4, 2), (6, 2), (10, 2), (12, 4), (6, 6), (180, 6), (300, 4)]


def _cases(count: int = 600):
    rng = random.Random(20240611)
    for _ in range(count):
        fps = rng.choice(RATES)
        chunk_s, seg_s = rng.choice(LAYOUTS)
        duration = rng.choice(
            [rng.uniform(0.05, 5), rng.uniform(5, 120), rng.uniform(120, 4000), rng.randint(1, 900)]
        )
        if frame_at(duration, fps) > 0:
            yield duration, fps, chunk_s, seg_s


def test_frame_counts_add_up_to_the_source_for_any_duration_and_rate():
    for duration, fps, chunk_s, seg_s in _cases():
        chunks = plan_chunks(duration_s=duration, fps=fps, chunk_seconds=chunk_s, segment_seconds=seg_s)
        assert sum(c.frame_count for c in chunks) == total_frames(duration_s=duration, fps=fps)
        assert chunks[0].start_frame == 0
        for before, after in zip(chunks, chunks[1:], strict=False):
            assert after.start_frame == before.end_frame  # no gap, no overlap
        assert [c.index for c in chunks] == list(range(len(chunks)))


def test_every_chunk_boundary_is_a_segment_boundary():
    for duration, fps, chunk_s, seg_s in _cases():
        seg = segment_frames(fps=fps, segment_seconds=seg_s)
        per_chunk = seg * (chunk_s // seg_s)
        chunks = plan_chunks(duration_s=duration, fps=fps, chunk_seconds=chunk_s, segment_seconds=seg_s)
        for chunk in chunks:
            assert chunk.start_frame % seg == 0
            assert chunk.start_frame == chunk.index * per_chunk
        for chunk in chunks[:-1]:
            assert chunk.frame_count == per_chunk


def test_the_last_chunk_is_never_shorter_than_half_a_segment_unless_alone():
    for duration, fps, chunk_s, seg_s in _cases():
        seg = segment_frames(fps=fps, segment_seconds=seg_s)
        per_chunk = seg * (chunk_s // seg_s)
        chunks = plan_chunks(duration_s=duration, fps=fps, chunk_seconds=chunk_s, segment_seconds=seg_s)
        if len(chunks) > 1:
            assert 2 * chunks[-1].frame_count >= seg
            assert chunks[-1].frame_count < per_chunk + (seg + 1) // 2


def test_times_are_the_instants_of_the_boundary_frames():
    for duration, fps, chunk_s, seg_s in _cases(300):
        chunks = plan_chunks(duration_s=duration, fps=fps, chunk_seconds=chunk_s, segment_seconds=seg_s)
        for chunk in chunks[:3] + chunks[-3:]:
            assert chunk.start_s == pytest.approx(float(chunk.start_frame / fps), abs=1e-9)
            assert chunk.end_s == pytest.approx(float(chunk.end_frame / fps), abs=1e-9)
            assert frame_at(chunk.start_s, fps) == chunk.start_frame


def test_ntsc_segments_are_a_whole_number_of_frames():
    fps = Fraction(30000, 1001)
    assert segment_frames(fps=fps, segment_seconds=2) == 60
    assert segment_duration_s(fps=fps, segment_seconds=2) == pytest.approx(2.002)
    chunks = plan_chunks(duration_s=5.005, fps=fps, chunk_seconds=2, segment_seconds=2)
    assert [(c.start_frame, c.frame_count) for c in chunks] == [(0, 60), (60, 60), (120, 30)]


def test_a_short_tail_is_merged_into_the_previous_chunk():
    # 8 s + 10 frames at 25 fps, 4 s chunks of 2 s segments: the 10-frame tail (< 25) merges.
    chunks = plan_chunks(duration_s=8.4, fps=Fraction(25), chunk_seconds=4, segment_seconds=2)
    assert [(c.start_frame, c.frame_count) for c in chunks] == [(0, 100), (100, 110)]
    # A tail of exactly half a segment is kept as its own chunk.
    chunks = plan_chunks(duration_s=9.0, fps=Fraction(25), chunk_seconds=4, segment_seconds=2)
    assert [(c.start_frame, c.frame_count) for c in chunks] == [(0, 100), (100, 100), (200, 25)]


def test_a_video_shorter_than_one_chunk_is_one_chunk():
    chunks = plan_chunks(duration_s=0.2, fps=Fraction(25), chunk_seconds=180, segment_seconds=6)
    assert [(c.start_frame, c.frame_count) for c in chunks] == [(0, 5)]


def test_rounding_is_half_up_everywhere():
    assert frame_at(0.5, Fraction(1)) == 1  # Python's round(0.5) would say 0
    assert frame_at(2.5, Fraction(1)) == 3
    assert total_frames(duration_s=5.005, fps=Fraction(30000, 1001)) == 150


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"chunk_seconds": 5, "segment_seconds": 2}, "multiple"),
        ({"chunk_seconds": 0, "segment_seconds": 2}, "multiple"),
        ({"chunk_seconds": -4, "segment_seconds": 2}, "multiple"),
        ({"chunk_seconds": 4, "segment_seconds": 0}, "segment_seconds"),
        ({"chunk_seconds": 4, "segment_seconds": 2, "duration_s": 0.0}, "duration"),
        ({"chunk_seconds": 4, "segment_seconds": 2, "duration_s": float("nan")}, "duration"),
        ({"chunk_seconds": 4, "segment_seconds": 2, "fps": Fraction(0)}, "fps"),
        ({"chunk_seconds": 4, "segment_seconds": 2, "duration_s": 0.001}, "less than one frame"),
    ],
)
def test_impossible_plans_are_refused(kwargs, message):
    arguments = {"duration_s": 10.0, "fps": Fraction(25), **kwargs}
    with pytest.raises(ValueError, match=message):
        plan_chunks(**arguments)


def test_constant_rate_sources_keep_their_rate():
    assert planning_fps(fps=Fraction(30000, 1001), avg_fps=Fraction(30000, 1001), vfr=False) == Fraction(
        30000, 1001
    )


def test_variable_rate_sources_snap_to_a_standard_rate():
    assert planning_fps(fps=Fraction(90000), avg_fps=Fraction(2987, 100), vfr=True) == Fraction(30000, 1001)
    assert planning_fps(fps=Fraction(30), avg_fps=Fraction(2496, 100), vfr=True) == Fraction(25)
    # Far from any standard rate: the average itself, with a small denominator.
    odd = planning_fps(fps=Fraction(25), avg_fps=Fraction(15), vfr=True)
    assert odd == Fraction(15)
