"""Workers dying mid-unit, cancellation, and the reconciler that puts lost work back."""

import signal
import subprocess
import sys
import time

import psutil
import pytest

from pipeline.models import EncodeJob, JobState, Unit, UnitState
from pipeline.reconcile import reconcile_all
from pipeline.services.jobs import job_cancel
from tests.conftest import ENCODE_LANE_2, ROOT, process_running, wait_until, worker_env
from tests.pipeline.clips import make_clip
from tests.pipeline.conftest import ALL_QUEUES
from tests.pipeline.test_pipeline_e2e import announce

pytestmark = [pytest.mark.slow, ENCODE_LANE_2]


def start_worker() -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", *ALL_QUEUES],
        cwd=ROOT, env=worker_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a worker and everything under it (its work horse and ffmpeg)."""
    parent = psutil.Process(proc.pid)
    for child in parent.children(recursive=True):
        child.send_signal(signal.SIGKILL)
    parent.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            kill_tree(proc)


def ffmpeg_children(proc: subprocess.Popen) -> list[psutil.Process]:
    try:
        return [p for p in psutil.Process(proc.pid).children(recursive=True) if p.name() == "ffmpeg"]
    except psutil.NoSuchProcess:
        return []


def test_worker_killed_mid_unit_the_job_still_completes(tmp_path, publisher, upload, redis_conn, s3, settings):
    settings.REELFLOW_CHUNK_SECONDS = 4
    settings.REELFLOW_SEGMENT_SECONDS = 2
    clip = make_clip(tmp_path / "kill.mp4", duration=8, width=854, height=480, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    victim = start_worker()
    try:
        running = wait_until(
            lambda: Unit.objects.filter(job_id=job_id, state=UnitState.RUNNING, chunk__isnull=False).first()
            if ffmpeg_children(victim) else None,
            timeout=120, interval=0.05, message="a unit with ffmpeg running",
        )
        kill_tree(victim)
        survivor = start_worker()
        try:
            deadline = time.monotonic() + 240
            while EncodeJob.objects.get(pk=job_id).state not in (JobState.PUBLISHED, JobState.FAILED):
                assert time.monotonic() < deadline, "job did not finish after the kill"
                reconcile_all()  # what the scheduler does every few seconds
                time.sleep(1)
        finally:
            stop(survivor)
    finally:
        stop(victim)
    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    killed = Unit.objects.get(pk=running.pk)
    assert killed.state == UnitState.DONE and killed.attempts >= 2
    assert killed.frames == killed.chunk.frame_count
    for rendition in job.renditions.filter(kind="video"):
        assert rendition.units_done == rendition.units_total, "no unit lost or counted twice"
        assert rendition.frame_count == sum(job.chunks.values_list("frame_count", flat=True))


def test_cancel_stops_running_ffmpeg_and_drops_queued_units(tmp_path, publisher, upload, redis_conn, s3, settings):
    settings.REELFLOW_CHUNK_SECONDS = 4
    settings.REELFLOW_SEGMENT_SECONDS = 2
    clip = make_clip(tmp_path / "cancel.mp4", duration=16, width=1280, height=720, fps=25)
    job_id = announce(upload(clip, publisher, profile="standard")).job_id
    worker = start_worker()
    try:
        wait_until(lambda: ffmpeg_children(worker) and Unit.objects.filter(job_id=job_id, state=UnitState.RUNNING).exists(),
                   timeout=120, interval=0.05, message="a running unit")
        pids = [p.pid for p in ffmpeg_children(worker)]
        cancelled_at = time.monotonic()
        job_cancel(job_id=job_id)
        wait_until(lambda: not any(process_running(pid) for pid in pids),
                   timeout=10, interval=0.05, message="ffmpeg to stop")
        stop_s = time.monotonic() - cancelled_at
        time.sleep(2)
        assert not ffmpeg_children(worker), "no new unit starts on a cancelled job"
    finally:
        stop(worker)
    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.CANCELLED
    assert not Unit.objects.filter(job=job, state__in=[UnitState.QUEUED, UnitState.RUNNING]).exists()
    assert stop_s < 5
    import django_rq

    assert django_rq.get_queue("encode").count == 0, "queued units were dropped from the queue"
