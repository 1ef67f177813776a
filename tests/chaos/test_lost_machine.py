"""A worker machine that disappears: workers in their own network namespaces (one "machine"
each, own address on a bridge), joining only through REDIS_URL, the database and the S3
settings. One machine's link is cut mid-job; its units run on the other once their liveness
keys lapse, and the job completes. This is also the proof that workers need nothing but those
three settings: they share no network with the web process or each other.

Needs root for `ip netns`; SQLite's file is on the shared disk (the namespaces only isolate
the network), Redis and SeaweedFS are this test's own, bound to the bridge address.
"""

import os
import subprocess
import time
import uuid

import pytest

from core import s3 as s3_module
from pipeline import progress
from pipeline.models import EncodeJob, JobState, Unit, UnitState
from tests.chaos.conftest import PrivateRedis, assert_job_complete_and_valid, kill_tree, wait_final
from tests.conftest import TEST_S3_ACCESS_KEY, TEST_S3_SECRET_KEY, wait_until
from tests.pipeline.clips import make_clip
from tests.pipeline.test_pipeline_e2e import announce

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

SUBNET = "10.77.{n}"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=30)


class Machines:
    """A bridge on the host (the "switch") and one namespace per worker machine."""

    def __init__(self) -> None:
        tag = uuid.uuid4().hex[:4]
        self.n = 100 + os.getpid() % 100
        self.bridge = f"rfbr{tag}"
        self.host_addr = f"{SUBNET.format(n=self.n)}.1"
        self.machines: dict[str, dict] = {}
        self.tag = tag

    def setup(self, count: int) -> None:
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.host_addr}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for index in range(count):
            name = f"rf-m{index}-{self.tag}"
            host_if, ns_if = f"rfh{index}{self.tag}", f"rfn{index}{self.tag}"
            address = f"{SUBNET.format(n=self.n)}.{10 + index}"
            ip("netns", "add", name)
            ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
            ip("link", "set", ns_if, "netns", name)
            ip("link", "set", host_if, "master", self.bridge)
            ip("link", "set", host_if, "up")
            ip("netns", "exec", name, "ip", "addr", "add", f"{address}/24", "dev", ns_if)
            ip("netns", "exec", name, "ip", "link", "set", ns_if, "up")
            ip("netns", "exec", name, "ip", "link", "set", "lo", "up")
            self.machines[name] = {"host_if": host_if, "address": address}

    def cut(self, name: str) -> None:
        """The machine vanishes from the network (its cable pulled)."""
        ip("link", "set", self.machines[name]["host_if"], "down")

    def teardown(self) -> None:
        for name, machine in self.machines.items():
            ip("link", "del", machine["host_if"], check=False)
            ip("netns", "del", name, check=False)
        ip("link", "del", self.bridge, check=False)


@pytest.fixture
def machines():
    probe = ip("netns", "add", f"rf-probe-{os.getpid()}", check=False)
    if probe.returncode != 0:
        pytest.skip(f"network namespaces are not permitted here (`ip netns add`: {probe.stderr.strip()})")
    ip("netns", "del", f"rf-probe-{os.getpid()}", check=False)
    net = Machines()
    try:
        net.setup(2)
        yield net
    finally:
        net.teardown()


@pytest.fixture
def bridge_services(machines, tmp_path, settings):
    """Redis and SeaweedFS of this test, listening on the bridge address only."""
    from devservices.seaweed import start_seaweed

    redis_server = PrivateRedis(tmp_path, host=machines.host_addr)
    redis_server.start()
    weed = start_seaweed(data_dir=tmp_path / "weed", access_key=TEST_S3_ACCESS_KEY, secret_key=TEST_S3_SECRET_KEY,
                         ip=machines.host_addr)  # fmt: skip
    settings.RQ_QUEUES = {
        name: {**conf, "URL": redis_server.url} for name, conf in settings.RQ_QUEUES.items()
    }
    settings.S3_ENDPOINT_URL = settings.S3_PUBLIC_ENDPOINT_URL = weed.endpoint_url
    settings.S3_ACCESS_KEY, settings.S3_SECRET_KEY = TEST_S3_ACCESS_KEY, TEST_S3_SECRET_KEY
    progress._state.__dict__.clear()
    s3_module.clients_reset()
    s3_module.buckets_ensure([settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA, settings.S3_BUCKET_BACKUP])
    yield {"redis": redis_server.url, "s3": weed.endpoint_url}
    weed.stop()
    redis_server.stop()
    progress._state.__dict__.clear()
    s3_module.clients_reset()


def test_a_machine_cut_off_mid_job_its_units_run_elsewhere(
    tmp_path, publisher, workers, machines, bridge_services, settings
):
    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2
    s3 = s3_module.client()
    env = {"TEST_REDIS_URL": bridge_services["redis"], "S3_ENDPOINT_URL": bridge_services["s3"]}
    lost, survivor = list(machines.machines)
    lost_worker = workers.start(env=env, argv_prefix=("ip", "netns", "exec", lost), name="lost")
    # Both machines reach the services through the bridge, not loopback.
    clip = make_clip(tmp_path / "far.mp4", duration=20, width=640, height=360, fps=25)
    key = f"uploads/{publisher.username}/{uuid.uuid4().hex[:8]}/far.mp4"
    s3.upload_file(str(clip), settings.S3_BUCKET_INGEST, key, ExtraArgs={"Metadata": {"profile": "fast"}})
    job_id = announce(key).job_id
    running = wait_until(
        lambda: list(Unit.objects.filter(job_id=job_id, state=UnitState.RUNNING, worker=lost_worker.worker_name)),
        timeout=120, interval=0.1, message="a unit running on the machine about to vanish",
    )  # fmt: skip
    workers.start(env=env, argv_prefix=("ip", "netns", "exec", survivor), name="survivor")
    machines.cut(lost)
    cut_at = time.monotonic()
    job = wait_final(job_id, timeout=360)
    print(
        f"cut off while running units {[u.pk for u in running]}; job finished {time.monotonic() - cut_at:.0f} s later"
    )
    kill_tree(lost_worker)  # the machine is gone for good
    assert job.state != JobState.FAILED, job.failure_reason
    assert_job_complete_and_valid(job_id, s3)
    for unit in Unit.objects.filter(pk__in=[u.pk for u in running]):
        assert unit.state == UnitState.DONE and unit.attempts >= 2, (unit.pk, unit.state, unit.attempts)
        assert unit.worker != lost_worker.worker_name, "a lost machine's unit was finished elsewhere"
    assert EncodeJob.objects.get(pk=job_id).state in (JobState.PUBLISHED, JobState.HELD)
