"""Chaos fixtures: long-running real workers (started, killed and replaced by the tests), a
private Redis that can be restarted, and the checks every chaos test ends with.

Everything here runs the real job code; faults are injected from outside (signals, a restarted
server, a proxy, a full filesystem, a cut link), never by patching the code under test.
"""

import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from pipeline.models import Artifact, EncodeJob, JobState, Rendition, RenditionKind, Unit, UnitState
from pipeline.queues import MEDIA as MEDIA_QUEUES
from pipeline.reconcile import reconcile_all
from tests.conftest import ROOT, free_port, worker_env
from tests.pipeline.conftest import ladders, publisher, upload  # noqa: F401

WORKER_QUEUES = (*MEDIA_QUEUES, "default")  # every media lane, quality included


class Workers:
    """Real `manage.py rqworker` processes (with the scheduler, as the Procfile runs them)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen] = []

    def start(
        self, *, env: dict | None = None, argv_prefix: tuple[str, ...] = (), name: str = ""
    ) -> subprocess.Popen:
        index = len(self.procs)
        proc_name = f"chaos-{index}{'-' + name if name else ''}-{uuid.uuid4().hex[:6]}"
        log = (self.log_dir / f"{proc_name}.log").open("w")
        proc = subprocess.Popen(
            [*argv_prefix, sys.executable, "manage.py", "rqworker", *queues(), "--with-scheduler", "--name", proc_name],
            cwd=ROOT, env=worker_env(env), stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        proc.log_path = log.name
        proc.worker_name = proc_name
        proc.env, proc.argv_prefix = env, argv_prefix
        self.procs.append(proc)
        return proc

    def supervise(self) -> list[str]:
        """Start a replacement for every worker that exited, as systemd's Restart=always or a
        container orchestrator would; returns the log tails of the exited ones."""
        exited = []
        for proc in list(self.procs):
            if proc.poll() is not None and not getattr(proc, "replaced", False):
                proc.replaced = True
                exited.append(f"{proc.worker_name} exited {proc.returncode}: " + tail(proc.log_path))
                self.start(env=proc.env, argv_prefix=proc.argv_prefix, name="restarted")
        return exited

    def alive(self) -> list[subprocess.Popen]:
        return [p for p in self.procs if p.poll() is None]

    def stop_all(self) -> None:
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                kill_tree(proc)


def tail(path: str, lines: int = 15) -> str:
    with open(path, errors="replace") as handle:
        return "".join(handle.readlines()[-lines:])


def queues() -> tuple[str, ...]:
    return WORKER_QUEUES


def kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a worker and everything under it (ffmpeg)."""
    try:
        parent = psutil.Process(proc.pid)
        children = parent.children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    for child in children:
        try:
            child.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    try:
        proc.send_signal(signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)


@pytest.fixture
def workers(tmp_path, redis_conn):
    pool = Workers(tmp_path)
    yield pool
    pool.stop_all()


def wait_final(job_id: int, *, timeout: float, reconcile: bool = True, tick=None) -> EncodeJob:
    """Wait for the job to end, running the reconciler every second as the scheduler does
    (every 10 s there; 1 s here keeps the tests short). `tick()` runs each round too."""
    deadline = time.monotonic() + timeout
    while True:
        job = EncodeJob.objects.get(pk=job_id)
        if job.state in (JobState.PUBLISHED, JobState.HELD, JobState.FAILED, JobState.CANCELLED):
            return job
        assert time.monotonic() < deadline, (
            f"job {job_id} still {job.state} after {timeout}s: {unit_states(job_id)}"
        )
        if reconcile:
            try:
                reconcile_all()
            except Exception as exc:  # Redis being restarted: the scheduler would try again
                print(f"reconcile failed this round: {exc!r}")
        if tick is not None:
            tick()
        time.sleep(1)


def unit_states(job_id: int) -> dict:
    states: dict[str, int] = {}
    for state in Unit.objects.filter(job_id=job_id).values_list("state", flat=True):
        states[state] = states.get(state, 0) + 1
    return states


def ffprobe_frames(url: str) -> int:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets", "-show_entries",
         "stream=nb_read_packets", "-of", "json", url],
        capture_output=True, check=True, timeout=120,
    )  # fmt: skip
    return int(json.loads(out.stdout)["streams"][0]["nb_read_packets"])


def assert_job_complete_and_valid(job_id: int, s3) -> EncodeJob:
    """Published, every unit done and counted once, every output there and right."""
    from core import s3 as s3_module

    job = EncodeJob.objects.select_related("asset").get(pk=job_id)
    assert job.state in (JobState.PUBLISHED, JobState.HELD), (job.state, job.failure_reason)
    units = list(Unit.objects.filter(job=job))
    assert units and all(u.state == UnitState.DONE for u in units), unit_states(job_id)
    planned_frames = sum(job.chunks.values_list("frame_count", flat=True))
    for rendition in Rendition.objects.filter(job=job):
        done = sum(1 for u in units if u.rendition_id == rendition.pk)
        # unit_finish counts under a row lock and never twice for one unit
        assert rendition.units_done == rendition.units_total == done, (
            rendition.name,
            rendition.units_done,
            done,
        )
        if rendition.kind == RenditionKind.VIDEO:
            assert rendition.frame_count == planned_frames, (
                rendition.name,
                rendition.frame_count,
                planned_frames,
            )
            url = s3_module.presign_get(settings.S3_BUCKET_MEDIA, rendition.output_key, expires=600)
            assert ffprobe_frames(url) == planned_frames, rendition.name
    for unit in units:
        head = s3.head_object(Bucket=settings.S3_BUCKET_MEDIA, Key=unit.output_key)
        if unit.chunk_id:
            assert head["Metadata"].get("frames") == str(unit.frames), unit.output_key
    keys = list(Artifact.objects.filter(job=job).values_list("key", flat=True))
    assert len(keys) == len(set(keys)), "an artifact recorded twice"
    master = (
        s3.get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=job.master_playlist_key)["Body"].read().decode()
    )
    folder = job.master_playlist_key.rsplit("/", 1)[0]
    for line in master.splitlines():
        if line and not line.startswith("#"):
            playlist = (
                s3.get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=f"{folder}/{line}")["Body"].read().decode()
            )
            for segment in (x for x in playlist.splitlines() if x and not x.startswith("#")):
                seg_key = f"{folder}/{line.rsplit('/', 1)[0] + '/' if '/' in line else ''}{segment}"
                s3.head_object(Bucket=settings.S3_BUCKET_MEDIA, Key=seg_key)
    return job


class PrivateRedis:
    """A redis-server of this test's own, on a free port, that forgets everything on restart
    (no persistence: the worst case for the pipeline)."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1") -> None:
        self.workdir, self.host, self.port = workdir, host, free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", self.host, "--port", str(self.port), "--dir", str(self.workdir),
             "--save", "", "--appendonly", "no", "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("private redis-server did not start")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def restart(self, down_s: float = 1.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()
