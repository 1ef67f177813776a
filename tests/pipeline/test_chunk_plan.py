"""Chunks sized to the fleet and moved to scene changes, on real sources: ffmpeg's scene score
around the planned boundaries, the plan's lineage on the job and its page, and the fallback
when scene analysis fails."""

import socket
import uuid
from fractions import Fraction
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from rq import Worker

from core.models import Event
from core.roles import Role
from pipeline import ffmpeg, scenes, scheduling
from pipeline.ffmpeg import run_ffmpeg

CUT_AT_S = 5  # the hard cut: a segment boundary one segment after the planned cut at 4 s


def make_hard_cut(
    path: Path, *, before_s: float = CUT_AT_S, after_s: float = 7, size: str = "320x240"
) -> Path:
    """testsrc2 (moving) for ``before_s``, then SMPTE bars (still): one hard cut. A keyframe
    every 2 s, so the cut does not sit on one of the source's keyframes."""
    run_ffmpeg([
        "-f", "lavfi", "-i", f"testsrc2=size={size}:rate=25:duration={before_s}",
        "-f", "lavfi", "-i", f"smptebars=size={size}:rate=25:duration={after_s}",
        "-filter_complex", "[0:v][1:v]concat=n=2:v=1:a=0[v]", "-map", "[v]",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "50", "-sc_threshold", "0", "-pix_fmt", "yuv420p",
        str(path),
    ])  # fmt: skip
    return path


@pytest.fixture
def fleet(settings):
    """The shipped planning rules, at 1 s segments so a 12 s clip has room to move a cut:
    one slot, 3 chunks of 4 segments, cuts at 4 s and 8 s."""
    settings.REELFLOW_SEGMENT_SECONDS = 1
    settings.REELFLOW_CHUNK_SECONDS = 300
    settings.REELFLOW_ENCODE_SLOTS = 1
    settings.REELFLOW_CHUNKS_PER_SLOT = 3
    settings.REELFLOW_MIN_CHUNK_SEGMENTS = 3
    settings.REELFLOW_SCENE_WINDOW_SEGMENTS = 1
    settings.REELFLOW_SCENE_TIMEOUT_S = 30
    return settings


def test_the_scene_score_finds_the_hard_cut_and_nothing_else(tmp_path):
    clip = make_hard_cut(tmp_path / "cut.mp4")
    video = ffmpeg.probe(str(clip)).video
    scan = scenes.scan_boundaries(
        input_url=str(clip), source=video, fps=video.fps, groups=[[75, 100, 125], [175, 200, 225]],
        total_frames=300, timeout_s=30,
    )  # fmt: skip
    assert scan.changes[125].frame == 125
    assert scan.changes[125].score > 0.5
    assert all(c.score < 0.1 for frame, c in scan.changes.items() if frame != 125)
    assert scan.cpu_s > 0 and "gte(scene,0)" in scan.command


def test_a_source_that_cannot_be_read_fails_the_scan_with_a_reason(tmp_path):
    clip = make_hard_cut(tmp_path / "cut.mp4")
    video = ffmpeg.probe(str(clip)).video
    with pytest.raises(ffmpeg.PermanentMediaError, match="does not exist"):
        scenes.scan_boundaries(
            input_url=str(tmp_path / "gone.mp4"), source=video, fps=Fraction(25), groups=[[100]],
            total_frames=300, timeout_s=30,
        )  # fmt: skip


def ingest(publisher, upload, clip: Path):
    from pipeline.models import EncodeJob
    from pipeline.steps.ingest import job_ingest_run
    from tests.pipeline.test_pipeline_e2e import announce

    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    job_ingest_run(job_id=job_id)  # probe and plan here; the units wait in the queue
    return EncodeJob.objects.get(pk=job_id)


@pytest.fixture
def ops_client(make_user):
    client = Client()
    client.force_login(make_user(f"ops{uuid.uuid4().hex[:6]}", role=Role.OPERATIONS))
    return client


def test_a_boundary_moves_to_the_hard_cut_and_the_job_says_why(
    tmp_path, publisher, upload, s3, redis_conn, fleet, ops_client
):
    job = ingest(publisher, upload, make_hard_cut(tmp_path / "cut.mp4"))
    assert job.state == "encoding", job.failure_reason
    chunks = list(job.chunks.order_by("index").values_list("start_frame", "frame_count"))
    assert chunks == [(0, 125), (125, 75), (200, 100)], "the first cut moved from 4 s to the cut at 5 s"

    plan = job.chunk_plan
    assert plan["inputs"] == {
        "duration_s": 12.0, "fps": "25", "frames": 300, "segment_frames": 25, "segment_s": 1.0, "segments": 12,
        "slots": 1, "slots_from": "REELFLOW_ENCODE_SLOTS", "chunks_per_slot": 3, "min_segments": 3,
        "max_segments": 300, "max_chunk_s": 300,
    }  # fmt: skip
    assert (plan["planned_cuts"], plan["cuts"]) == ([4, 8], [5, 8])
    moved, kept = plan["boundaries"]
    assert (moved["planned_s"], moved["at_s"], moved["scene_at_s"]) == (4.0, 5.0, 5.0)
    assert moved["score"] > 0.5
    assert moved["note"].startswith("planned at 4 s, moved to 5 s: scene change (score 0.")
    assert kept["note"] == "kept at 8 s: no scene change of 0.3 or more within ±1 segment"
    assert plan["scene"]["status"] == "analysed" and plan["scene"]["boundaries_scanned"] == 6
    assert "X-Amz-Signature" not in plan["scene"]["command"], "no working link to the source is stored"
    assert plan["summary"] == "3 chunks of 3–5 s: 3 wanted (3 per slot × 1 slot)"

    [planned] = Event.objects.filter(subject_id=str(job.pk), type="job.planned")
    assert planned.payload["moved"] == 1 and planned.payload["plan"] == plan["summary"]

    page = ops_client.get(reverse("console:job", kwargs={"job_id": job.pk})).content.decode()
    assert "Chunk plan: 3 chunks of 3–5 s" in page
    assert "planned at 4 s, moved to 5 s: scene change" in page
    assert "1 slot (REELFLOW_ENCODE_SLOTS)" in page


def test_when_scene_analysis_fails_the_plain_plan_is_kept_with_the_reason(
    tmp_path, publisher, upload, s3, redis_conn, fleet, ops_client
):
    fleet.REELFLOW_SCENE_TIMEOUT_S = 0.001  # every run is stopped: the analysis fails
    job = ingest(publisher, upload, make_hard_cut(tmp_path / "cut.mp4"))
    assert job.state == "encoding", "scene analysis never fails the job"
    assert list(job.chunks.order_by("index").values_list("start_frame", "frame_count")) == [
        (0, 100), (100, 100), (200, 100)]  # fmt: skip
    scene = job.chunk_plan["scene"]
    assert scene["status"] == "failed" and "did not finish within 0.001 s" in scene["reason"]
    assert [b["note"] for b in job.chunk_plan["boundaries"]] == [
        "kept at 4 s: plain plan (scene analysis failed)",
        "kept at 8 s: plain plan (scene analysis failed)",
    ]
    page = ops_client.get(reverse("console:job", kwargs={"job_id": job.pk})).content.decode()
    assert "Scene analysis: failed, plain plan kept: " in page


def test_chunks_at_their_bounds_skip_the_analysis(tmp_path, publisher, upload, s3, redis_conn, fleet):
    fleet.REELFLOW_ENCODE_SLOTS = 2  # 6 wanted, 12 segments hold 4 of 3: no room to move
    job = ingest(publisher, upload, make_hard_cut(tmp_path / "cut.mp4"))
    assert job.chunks.count() == 4
    assert job.chunk_plan["scene"]["status"] == "skipped"
    assert "no boundary has room to move" in job.chunk_plan["scene"]["reason"]
    assert "command" not in job.chunk_plan["scene"], "no ffmpeg was run"


def test_the_test_settings_keep_the_fixed_plan(tmp_path, publisher, upload, s3, redis_conn):
    """config/settings/test.py: 4 s chunks of 2 s segments, under the 3-segment minimum, so the
    fleet rules leave the chunk counts every other test expects."""
    job = ingest(publisher, upload, make_hard_cut(tmp_path / "cut.mp4"))
    assert list(job.chunks.values_list("frame_count", flat=True)) == [100, 100, 100]
    assert job.chunk_plan["rule"] == "fixed" and job.chunk_plan["scene"]["reason"] == "fixed plan"


def _register(conn, queues, hostname):
    worker = Worker(queues, connection=conn, name=f"t-{uuid.uuid4().hex[:8]}")
    worker.hostname = hostname
    worker.register_birth()
    return worker


def test_the_encode_workers_are_counted_from_the_queue_registry(redis_conn):
    host = f"fleet-{uuid.uuid4().hex[:6]}-{socket.gethostname()}"
    workers = [
        _register(redis_conn, ["ingest", "encode", "quality"], host),
        _register(redis_conn, ["encode"], host),
        _register(redis_conn, ["webhooks", "default"], host),  # a control worker
        _register(redis_conn, ["encode"], host),
    ]
    try:
        assert scheduling.encode_workers(host=host) == 3
        redis_conn.delete(workers[3].key)  # its heartbeats stopped and RQ let the key lapse
        assert scheduling.encode_workers(host=host) == 2
        assert scheduling.encode_workers() >= 2
    finally:
        for worker in workers:
            worker.register_death()


def test_slots_come_from_the_setting_or_the_registry(redis_conn, settings):
    from pipeline.steps.probe import encode_slots

    settings.REELFLOW_ENCODE_SLOTS = 64
    assert encode_slots() == (64, "REELFLOW_ENCODE_SLOTS")
    settings.REELFLOW_ENCODE_SLOTS = 0
    workers = [_register(redis_conn, ["encode"], socket.gethostname()) for _ in range(2)]
    try:
        slots, source = encode_slots()
        assert slots >= 2 and source == "encode workers registered"
    finally:
        for worker in workers:
            worker.register_death()


@pytest.mark.slow
def test_a_job_with_a_moved_boundary_publishes_with_keyframes_on_every_segment(
    tmp_path, publisher, upload, s3, redis_conn, fleet, run_workers
):
    from pipeline.models import JobState, Rendition
    from tests.pipeline.test_pipeline_e2e import s3_url

    job = ingest(publisher, upload, make_hard_cut(tmp_path / "cut.mp4"))  # planned here, with the fleet rules
    assert job.chunk_plan["cuts"] == [5, 8]
    run_workers(2)
    job.refresh_from_db()
    assert job.state == JobState.PUBLISHED, job.failure_reason
    videos = list(Rendition.objects.filter(job=job, kind="video"))
    assert videos
    for rendition in videos:
        assert rendition.frame_count == 300
        # Every rung has an IDR on every 1 s segment boundary, the moved chunk boundary included.
        assert ffmpeg.keyframe_indices(s3_url(rendition.output_key)) == list(range(0, 300, 25)), rendition.name
