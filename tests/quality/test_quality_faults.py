"""Faults during measurement, injected from outside into real workers (as tests/chaos does): a
worker SIGKILLed in the middle of a measurement loses nothing, the reconcile sweep queues the
measurement again once the dead worker's liveness key lapses, and the job ends measured."""

import subprocess
import sys
import time

import pytest

from pipeline import progress
from pipeline.models import EncodeJob, JobState, QualityTask, QualityTaskState
from pipeline.quality import services as quality_services
from pipeline.quality.selectors import job_quality_state, qc_binary
from pipeline.queues import MEDIA as MEDIA_QUEUES
from tests.chaos.conftest import PrivateRedis, kill_tree
from tests.conftest import ROOT, wait_until, worker_env
from tests.pipeline.clips import make_clip
from tests.pipeline.test_pipeline_e2e import announce

pytestmark = [pytest.mark.slow, pytest.mark.chaos]


def stalling_ffmpeg(tmp_path) -> str:
    """The measuring ffmpeg, except that a measurement first waits a long time: long enough to
    kill its worker in the middle of it."""
    script = tmp_path / "stalling-ffmpeg"
    real = qc_binary()
    script.write_text(
        f'#!/bin/sh\ncase "$*" in *-version*|*-filters*) exec {real} "$@";; esac\n'
        f'touch "{tmp_path}/measuring"\nsleep 600\nexec {real} "$@"\n'
    )
    script.chmod(0o755)
    return str(script)


@pytest.fixture
def private_redis(tmp_path, settings):
    """This test's own redis-server (as tests/chaos uses): this process and its workers share
    nobody else's queues."""
    server = PrivateRedis(tmp_path)
    server.start()
    settings.RQ_QUEUES = {name: {**conf, "URL": server.url} for name, conf in settings.RQ_QUEUES.items()}
    progress._state.__dict__.clear()  # the per-process Redis client of pipeline.progress
    yield server
    server.stop()
    progress._state.__dict__.clear()


def start_worker(log, redis_url: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "rqworker", *MEDIA_QUEUES, "default"],
        cwd=ROOT, env=worker_env({"TEST_REDIS_URL": redis_url, **(env or {})}), stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_a_worker_killed_mid_measurement_loses_nothing(tmp_path, publisher, upload, s3, private_redis, settings):
    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2
    settings.REELFLOW_RECONCILE_GRACE_SECONDS = 0
    clip = make_clip(tmp_path / "clip.mp4", duration=4, width=320, height=240, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    log = (tmp_path / "workers.log").open("w")
    doomed = start_worker(log, private_redis.url, env={"REELFLOW_QC_FFMPEG": stalling_ffmpeg(tmp_path)})
    replacement = None
    try:
        wait_until(lambda: (tmp_path / "measuring").exists(), timeout=240, interval=0.5, message="a measurement")
        running = list(QualityTask.objects.filter(job_id=job_id, state=QualityTaskState.RUNNING))
        assert running, "the worker is measuring"
        killed_rq_id = running[0].rq_id
        kill_tree(doomed)

        replacement = start_worker(log, private_redis.url)
        deadline = time.monotonic() + 180
        while job_quality_state(EncodeJob.objects.get(pk=job_id)) == "pending":
            assert time.monotonic() < deadline, list(QualityTask.objects.filter(job_id=job_id).values("state", "rq_id"))
            quality_services.reconcile_tasks()  # the cron sweep, every second here
            time.sleep(1)
    finally:
        for proc in (doomed, replacement):
            if proc is not None and proc.poll() is None:
                kill_tree(proc)
        log.close()

    job = EncodeJob.objects.get(pk=job_id)
    assert job.state == JobState.PUBLISHED, job.failure_reason
    assert job_quality_state(job) == "done"
    tasks = list(QualityTask.objects.filter(job_id=job_id))
    assert tasks and all(t.state == QualityTaskState.DONE and t.scores for t in tasks)
    again = [t for t in tasks if t.pk in {r.pk for r in running}]
    assert all(t.attempts == 2 and t.rq_id != killed_rq_id for t in again), "measured again, under a new RQ id"
