"""Redis restarted mid-job (it forgets every queue), and S3 answering through a faulty proxy."""

import time
import urllib.parse

import pytest

from pipeline import progress
from pipeline.models import EncodeJob, JobState, Unit, UnitState
from tests.chaos.conftest import PrivateRedis, assert_job_complete_and_valid, wait_final
from tests.chaos.faultproxy import FaultProxy
from tests.conftest import wait_until
from tests.pipeline.clips import make_clip
from tests.pipeline.test_pipeline_e2e import announce

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.fixture
def short_chunks(settings):
    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2


@pytest.fixture
def private_redis(tmp_path, settings):
    """This test's own redis-server; this process and its workers use it for RQ."""
    server = PrivateRedis(tmp_path)
    server.start()
    settings.RQ_QUEUES = {name: {**conf, "URL": server.url} for name, conf in settings.RQ_QUEUES.items()}
    progress._state.__dict__.clear()  # the per-process Redis client of pipeline.progress
    yield server
    server.stop()
    progress._state.__dict__.clear()


def test_redis_restarted_mid_job_the_job_completes(
    tmp_path, publisher, upload, workers, s3, private_redis, short_chunks
):
    clip = make_clip(tmp_path / "redis.mp4", duration=20, width=640, height=360, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    env = {"TEST_REDIS_URL": private_redis.url}
    workers.start(env=env)
    workers.start(env=env)
    wait_until(lambda: Unit.objects.filter(job_id=job_id, state=UnitState.DONE).count() >= 4, timeout=120,
               message="a few units done")  # fmt: skip
    before = {s: Unit.objects.filter(job_id=job_id, state=s).count() for s in UnitState.values}
    restarted_at = time.monotonic()
    private_redis.restart(down_s=2)
    assert private_redis_is_empty(private_redis), "the restarted Redis must have forgotten the queues"
    exits: list[str] = []
    job = wait_final(job_id, timeout=300, tick=lambda: exits.extend(workers.supervise()))
    print(f"units before the restart: {before}; finished {time.monotonic() - restarted_at:.0f} s after it")
    print("worker exits:\n" + "\n".join(exits))
    assert job.state != JobState.FAILED, job.failure_reason
    assert_job_complete_and_valid(job_id, s3)


def private_redis_is_empty(server: PrivateRedis) -> bool:
    import redis

    return redis.Redis.from_url(server.url).dbsize() == 0


@pytest.fixture
def faulty_s3(s3_server):
    host, port = urllib.parse.urlsplit(s3_server.endpoint_url).netloc.split(":")
    proxy = FaultProxy(
        host, int(port), error_rate=0.05, max_latency_s=0.03, resets=1, reset_after=20, seed=9
    ).start()
    yield proxy
    proxy.stop()


def test_jobs_complete_through_s3_errors_latency_and_a_reset(
    tmp_path, publisher, upload, workers, s3, faulty_s3, short_chunks
):
    clips = [make_clip(tmp_path / f"s3-{i}.mp4", duration=8, width=640, height=360, fps=25) for i in range(2)]
    job_ids = [announce(upload(clip, publisher, profile="fast")).job_id for clip in clips]
    env = {"S3_ENDPOINT_URL": faulty_s3.url}
    workers.start(env=env)
    workers.start(env=env)
    started = time.monotonic()
    for job_id in job_ids:
        job = wait_final(job_id, timeout=420)
        assert job.state != JobState.FAILED, job.failure_reason
    stats = faulty_s3.stats
    print(f"through the proxy: {stats}; both jobs done in {time.monotonic() - started:.0f} s")
    for job_id in job_ids:
        assert_job_complete_and_valid(job_id, s3)
    assert stats.requests >= 100, stats
    assert sum(stats.errors.values()) >= 1 and stats.resets == 1, stats
    retried = Unit.objects.filter(job_id__in=job_ids, attempts__gt=1).count()
    print(
        f"units that needed another attempt: {retried} of {Unit.objects.filter(job_id__in=job_ids).count()}"
    )
    assert EncodeJob.objects.filter(pk__in=job_ids, state=JobState.PUBLISHED).count() + EncodeJob.objects.filter(
        pk__in=job_ids, state=JobState.HELD).count() == 2  # fmt: skip
