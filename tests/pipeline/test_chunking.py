"""Chunk planning is pure arithmetic: checked as properties over many durations and rates."""

import random
from fractions import Fraction

import pytest

from pipeline.chunking import (
    SceneChange,
    frame_at,
    kept_boundaries,
    plan_chunks,
    plan_for_fleet,
    plan_summary,
    planning_fps,
    refine_cuts,
    scene_candidates,
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
    # Far from any standard rate: the whole rate at or above the average.
    odd = planning_fps(fps=Fraction(25), avg_fps=Fraction(15), vfr=True)
    assert odd == Fraction(15)


def test_extreme_variable_rate_gets_a_whole_rate_at_or_above_its_average():
    # A phone's 84 frames over 11.35 s, declared at 600 fps (issue 22): 7.4 fps on average.
    assert planning_fps(fps=Fraction(600), avg_fps=Fraction(84) / Fraction("11.35"), vfr=True) == Fraction(8)
    assert planning_fps(fps=Fraction(600), avg_fps=Fraction(1, 3), vfr=True) == Fraction(1)
    assert planning_fps(fps=Fraction(1000), avg_fps=Fraction(240), vfr=True) == Fraction(60)


# --- Chunks sized to the fleet (plan_for_fleet) -------------------------------------------

# The shipped defaults: 4 s segments, 300 s at most, 3 segments at least, 3 chunks per slot,
# boundaries free to move one segment to a scene change.
FLEET = {"segment_seconds": 4, "max_chunk_seconds": 300, "min_segments": 3, "chunks_per_slot": 3, "scene_window": 1}


def fleet_plan(duration, slots, fps=Fraction(25), **overrides):
    return plan_for_fleet(duration_s=duration, fps=fps, slots=slots, **{**FLEET, **overrides})


@pytest.mark.parametrize(
    ("duration", "slots", "chunks", "lengths"),
    [
        (60, 1, 3, {5}),  # 3 per slot: 15 segments in 3 chunks of 20 s
        (60, 2, 5, {3}),  # 6 wanted, but 15 segments hold 5 of at least 3
        (60, 8, 5, {3}),
        (120, 4, 10, {3}),
        (10, 2, 1, {3}),  # shorter than two minimum chunks: one chunk (2.5 segments, the half counted)
        (600, 2, 6, {25}),
        (600, 8, 24, {6, 7}),  # evenly: 150 segments as 6 of 7 and 18 of 6
        (3600, 2, 13, {69, 70}),  # the upper bound wins: 900 segments need 13 of at most 74
        (3600, 64, 192, {4, 5}),
        (7200, 0, 25, {72}),  # no encode worker registered: planned for one slot
    ],
)
def test_the_chunk_count_follows_the_duration_and_the_slots(duration, slots, chunks, lengths):
    plan = fleet_plan(duration, slots)
    assert plan.rule == "fleet"
    assert len(plan.chunks()) == chunks
    assert set(plan.lengths()) == lengths


def test_long_titles_are_bounded_by_the_chunk_seconds_less_room_for_a_scene_move():
    plan = fleet_plan(3600, 2)  # 900 segments: 12 of 75 would fit exactly, none could grow
    assert max(plan.lengths()) <= 74
    assert "need 13 of at most 74 (75 less 1 of room for scene moves)" in plan.why
    no_scenes = fleet_plan(3600, 2, scene_window=0)
    assert set(no_scenes.lengths()) == {75} and len(no_scenes.cuts) == 11


def _fleet_cases(count: int = 400):
    rng = random.Random(20261207)
    for _ in range(count):
        fps = rng.choice(RATES[:9])
        seg_s = rng.choice([1, 2, 4, 6])
        yield {
            "duration": rng.choice([rng.uniform(0.1, 30), rng.uniform(30, 900), rng.uniform(900, 6 * 3600)]),
            "fps": fps,
            "slots": rng.choice([0, 1, 2, 3, 8, 32, 64, 200]),
            "segment_seconds": seg_s,
            "max_chunk_seconds": seg_s * rng.choice([3, 5, 20, 75, 150]),
            "min_segments": rng.choice([1, 2, 3, 5]),
            "chunks_per_slot": rng.choice([1, 2, 3, 4]),
            "scene_window": rng.choice([0, 1, 2]),
        }


def test_fleet_plans_cover_the_source_on_whole_segments_within_the_bounds():
    for case in _fleet_cases():
        duration, slots, fps = case.pop("duration"), case.pop("slots"), case.pop("fps")
        plan = plan_for_fleet(duration_s=duration, fps=fps, slots=slots, **case)
        chunks = plan.chunks()
        assert sum(c.frame_count for c in chunks) == total_frames(duration_s=duration, fps=fps)
        assert all(c.start_frame % plan.segment_frames == 0 for c in chunks)
        assert [c.index for c in chunks] == list(range(len(chunks)))
        if plan.rule == "fixed":
            continue
        lengths = plan.lengths()
        assert max(lengths) - min(lengths) <= 1, "spread evenly"
        assert max(lengths) <= plan.max_segments, "the upper bound always holds"
        if len(chunks) > 1 and min(lengths) < plan.min_segments:
            # Only where the bounds cannot both hold: fewer chunks would break the upper bound.
            assert -(-plan.segments // plan.max_segments) * plan.min_segments > plan.segments
        if len(chunks) > max(1, slots) * case["chunks_per_slot"]:
            # More than wanted only when fewer would be longer than the bound (less the room).
            assert plan.segments > (len(chunks) - 1) * (plan.max_segments - case["scene_window"])


def test_the_minimum_holds_however_many_slots_there_are():
    plan = fleet_plan(60, 1000)
    assert min(plan.lengths()) == 3 and len(plan.chunks()) == 5
    plan = fleet_plan(60, 1000, min_segments=1)
    assert len(plan.chunks()) == 15  # one segment each: as far as a plan can go


def test_a_fleet_plan_keeps_the_short_tail_rule():
    # 60.4 s at 25 fps: 15 whole 4 s segments and 10 frames. The 10 frames (under half a
    # segment) ride with the last chunk; 62 s has a half segment more, counted as a segment.
    plan = fleet_plan(60.4, 2)
    assert plan.segments == 15
    assert [c.frame_count for c in plan.chunks()] == [300, 300, 300, 300, 310]
    plan = fleet_plan(62, 2)
    assert plan.segments == 16
    assert [c.frame_count for c in plan.chunks()] == [400, 300, 300, 300, 250]


def test_the_plan_is_the_same_for_the_same_inputs():
    assert fleet_plan(600, 8) == fleet_plan(600, 8)
    assert fleet_plan(600, 8) != fleet_plan(600, 9)


def test_no_chunks_per_slot_or_a_bound_below_the_minimum_is_the_fixed_plan():
    """The test settings (4 s chunks of 2 s segments, under the 3-segment minimum) and
    REELFLOW_CHUNKS_PER_SLOT=0 both keep the plan every test before this one assumed."""
    for case in _fleet_cases(200):
        duration, slots, fps = case.pop("duration"), case.pop("slots"), case.pop("fps")
        fixed = plan_chunks(
            duration_s=duration, fps=fps, chunk_seconds=case["max_chunk_seconds"],
            segment_seconds=case["segment_seconds"],
        )  # fmt: skip
        off = plan_for_fleet(duration_s=duration, fps=fps, slots=slots, **{**case, "chunks_per_slot": 0})
        assert off.rule == "fixed" and off.chunks() == fixed
    plan = plan_for_fleet(
        duration_s=10, fps=Fraction(25), slots=8, segment_seconds=2, max_chunk_seconds=4, min_segments=3,
        chunks_per_slot=3,
    )  # fmt: skip
    assert plan.rule == "fixed" and "below the minimum" in plan.why
    assert [c.frame_count for c in plan.chunks()] == [100, 100, 50]


def test_a_plan_summary_says_how_many_of_what_length_and_why():
    assert plan_summary(fleet_plan(60, 2)) == (
        "5 chunks of 12 s: 6 wanted (3 per slot × 2 slots); 15 segments hold 5 of at least 3"
    )
    assert plan_summary(fleet_plan(600, 8)).startswith("24 chunks of 24–28 s: 24 wanted")


# --- Boundaries moved to scene changes (scene_candidates, refine_cuts) -----------------------


def test_candidates_leave_both_neighbouring_chunks_within_the_bounds():
    plan = fleet_plan(60, 1)  # 3 chunks of 5 segments: cuts at 5 and 10
    assert scene_candidates(plan, window=1) == [[4, 5, 6], [9, 10, 11]]
    assert scene_candidates(plan, window=2) == [[3, 4, 5, 6, 7], [8, 9, 10, 11, 12]]
    at_minimum = fleet_plan(60, 2)  # 5 chunks of 3 segments: nothing can move
    assert scene_candidates(at_minimum, window=1) == [[3], [6], [9], [12]]
    assert scene_candidates(plan, window=0) == [[5], [10]]


def test_a_cut_moves_to_the_strongest_scene_change_nearby():
    plan = fleet_plan(60, 1)
    candidates = scene_candidates(plan, window=1)
    changes = {4: SceneChange(frame=398, score=0.45), 6: SceneChange(frame=600, score=0.8), 10: SceneChange(frame=1000, score=0.05)}
    first, second = refine_cuts(plan, candidates=candidates, changes=changes, threshold=0.3, window=1)
    assert (first.planned, first.chosen, first.change.score) == (5, 6, 0.8)
    assert first.note == "planned at 20 s, moved to 24 s: scene change (score 0.80) at 24 s"
    assert (second.planned, second.chosen, second.change) == (10, 10, None)
    assert second.note == "kept at 40 s: no scene change of 0.3 or more within ±1 segment"
    assert [c.frame_count for c in plan.chunks((first.chosen, second.chosen))] == [600, 400, 500]


def test_a_move_never_breaks_the_bounds_of_the_chunk_before_it():
    # Cuts at 5 and 10 of 15 segments, at least 4 each: the first cut moved to 6 leaves the
    # second only 10 and 11 (a chunk of 4 or 5); its scene change at 9 is out of reach.
    plan = fleet_plan(60, 1, min_segments=4)
    candidates = scene_candidates(plan, window=1)
    changes = {6: SceneChange(frame=600, score=0.9), 9: SceneChange(frame=900, score=0.9)}
    first, second = refine_cuts(plan, candidates=candidates, changes=changes, threshold=0.3, window=1)
    assert (first.chosen, second.chosen) == (6, 10)
    assert all(4 <= n for n in plan.lengths((first.chosen, second.chosen)))


def test_ties_go_to_the_planned_cut_then_the_earlier_one():
    plan = fleet_plan(60, 1)
    candidates = scene_candidates(plan, window=1)
    same = SceneChange(frame=0, score=0.5)
    boundaries = refine_cuts(plan, candidates=candidates, changes=dict.fromkeys([4, 5, 6, 9, 11], same), threshold=0.3, window=1)
    assert [b.chosen for b in boundaries] == [5, 9]
    assert boundaries[0].note.startswith("kept at 20 s: scene change (score 0.50)")


def test_kept_boundaries_name_their_reason():
    plan = fleet_plan(60, 1)
    assert [b.note for b in kept_boundaries(plan, reason="plain plan (scene analysis failed)")] == [
        "kept at 20 s: plain plan (scene analysis failed)", "kept at 40 s: plain plan (scene analysis failed)"]
