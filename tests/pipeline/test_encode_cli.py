"""`manage.py encode PATH --profile fast --wait` in a real subprocess, with real workers."""

import subprocess
import sys

import pytest

from pipeline.models import EncodeJob, JobState
from pipeline.queues import MEDIA as MEDIA_QUEUES
from tests.conftest import ENCODE_LANE_2, ROOT, worker_env
from tests.pipeline.clips import make_clip, make_text
from tests.pipeline.odd_clips import make_undecodable_mp4

pytestmark = [pytest.mark.slow]


def encode(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "encode", *args],
        cwd=ROOT, env=worker_env({"REELFLOW_CHUNK_SECONDS": "2", "REELFLOW_SEGMENT_SECONDS": "2"}),
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def workers(rq_worker_process, publisher):
    for _ in range(2):
        rq_worker_process(*(q for q in MEDIA_QUEUES if q != "quality"), "default")  # no measuring


@ENCODE_LANE_2
def test_cli_encodes_and_prints_the_master_playlist(tmp_path, publisher, workers, s3):
    clip = make_clip(tmp_path / "cli.mp4", duration=4, width=640, height=360)
    result = encode(str(clip), "--profile", "fast", "--publisher", publisher.username, "--wait")
    assert result.returncode == 0, result.stderr
    assert "published in" in result.stdout
    assert "/hls/master.m3u8" in result.stdout
    job = EncodeJob.objects.get(asset__publisher=publisher)
    assert job.state == JobState.PUBLISHED and job.profile.slug == "fast"
    assert job.asset.title == "cli"
    # Captured output is not a terminal: the board is printed once, when the job has ended.
    boards = [line for line in result.stdout.splitlines() if line.startswith(f"job {job.pk}: ")]
    assert boards == [f"job {job.pk}: published"], result.stdout
    assert "\x1b[" not in result.stdout


@ENCODE_LANE_2
def test_cli_exits_non_zero_with_the_reason(tmp_path, publisher, workers, s3):
    result = encode(str(make_text(tmp_path / "notes.mp4")), "--profile", "fast", "--publisher", publisher.username, "--wait")
    assert result.returncode != 0
    assert "failed" in result.stderr and "not a media file" in result.stderr


@ENCODE_LANE_2
def test_cli_says_why_an_undecodable_file_failed_once_and_without_ffmpeg_text(tmp_path, publisher, workers, s3):
    clip = make_undecodable_mp4(tmp_path / "nomedia.mp4")
    result = encode(str(clip), "--profile", "fast", "--publisher", publisher.username, "--wait", timeout=120)
    assert result.returncode != 0
    assert "no frame of the video can be decoded" in result.stderr, result.stderr
    assert "Error marking filters" not in result.stderr + result.stdout
    job = EncodeJob.objects.get(asset__publisher=publisher)
    assert [line for line in result.stdout.splitlines() if line.startswith(f"job {job.pk}: ")] == [f"job {job.pk}: failed"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["/no/such/file.mp4"], "no such file"),
        (["--profile", "nope"], "unknown profile 'nope'"),
        (["--publisher", "ghost"], "no publisher named 'ghost'"),
    ],
)
def test_cli_refuses_bad_arguments_clearly(tmp_path, publisher, s3, args, message):
    clip = tmp_path / "x.mp4"
    clip.write_bytes(b"x")
    base = {"source": str(clip), "--profile": "fast", "--publisher": publisher.username}
    if args[0].startswith("/"):
        base["source"] = args[0]
    else:
        base[args[0]] = args[1]
    argv = [base.pop("source")] + [item for pair in base.items() for item in pair]
    result = encode(*argv, timeout=60)
    assert result.returncode != 0
    assert message in result.stderr
