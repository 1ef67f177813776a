"""Workers SIGKILLed at random moments, and a worker whose temp disk is full."""

import os
import random
import subprocess
import time

import pytest

from pipeline.models import EncodeJob, JobState, Unit, UnitState
from tests.chaos.conftest import assert_job_complete_and_valid, kill_tree, wait_final
from tests.pipeline.clips import make_clip
from tests.pipeline.test_pipeline_e2e import announce

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.fixture
def short_chunks(settings):
    settings.REELFLOW_CHUNK_SECONDS = 2
    settings.REELFLOW_SEGMENT_SECONDS = 2


def test_workers_sigkilled_five_times_at_random_moments(
    tmp_path, publisher, upload, workers, s3, short_chunks
):
    seed = int(os.environ.get("CHAOS_SEED", time.time()))
    rng = random.Random(seed)
    print(f"chaos seed {seed} (CHAOS_SEED={seed} replays the kill times)")
    clip = make_clip(tmp_path / "kill.mp4", duration=30, width=640, height=360, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    workers.start()
    workers.start()
    kills: list[dict] = []
    started = time.monotonic()
    next_kill: float | None = None

    def tick() -> None:
        nonlocal next_kill
        if len(kills) >= 5:
            return
        state = EncodeJob.objects.values_list("state", flat=True).get(pk=job_id)
        if next_kill is None:
            # The kills start with the job's work and land anywhere in it from then on.
            if state == JobState.ENCODING:
                next_kill = time.monotonic() + rng.uniform(0.0, 2.0)
            return
        if time.monotonic() < next_kill:
            return
        victim = rng.choice(workers.alive())
        kill_tree(victim)
        # Read after the kill: what the dead worker was still running is what it lost.
        running = list(
            Unit.objects.filter(
                job_id=job_id, state=UnitState.RUNNING, worker=victim.worker_name
            ).values_list("pk", flat=True)
        )
        kills.append(
            {"at_s": round(time.monotonic() - started, 1), "job": state, "units_running_on_victim": running}
        )
        workers.start()  # its supervisor starts it again
        next_kill = time.monotonic() + rng.uniform(0.5, 3.0)

    job = wait_final(job_id, timeout=420, tick=tick)
    print(f"kills: {kills}; finished after {time.monotonic() - started:.0f} s")
    assert len(kills) == 5, f"the job ended before five kills: {kills}"
    assert job.state != JobState.FAILED, job.failure_reason
    assert_job_complete_and_valid(job_id, s3)
    units = Unit.objects.filter(job_id=job_id)
    attempts = sum(units.values_list("attempts", flat=True))
    print(f"units: {units.count()}, attempts: {attempts}")
    killed_units = {u for kill in kills for u in kill["units_running_on_victim"]}
    for unit in units.filter(pk__in=killed_units):
        assert unit.attempts >= 2, f"unit {unit.pk} was killed mid-run, yet ran once"


@pytest.fixture
def tiny_tmpfs(tmp_path):
    """A 96 KiB tmpfs: the worker's temp folder fills on its first unit."""
    mount = tmp_path / "full-disk"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_full_temp_disk_fails_the_unit_clearly_and_it_runs_elsewhere(
    tmp_path, publisher, upload, workers, s3, tiny_tmpfs, short_chunks
):
    clip = make_clip(tmp_path / "full.mp4", duration=6, width=640, height=360, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    full = workers.start(env={"REELFLOW_WORK_DIR": str(tiny_tmpfs)}, name="full-disk")
    errors: set[str] = set()

    def watch() -> None:
        errors.update(
            e for e in Unit.objects.filter(job_id=job_id).exclude(error="").values_list("error", flat=True)
        )

    # The full worker alone first: it must take a unit, fail it, and stop taking more.
    deadline = time.monotonic() + 120
    while full.poll() is None and time.monotonic() < deadline:
        watch()
        time.sleep(0.2)
    assert full.poll() is not None, "a worker whose disk is full kept taking units"
    assert full.returncode == 0, "it shut down cleanly (warm shutdown), it did not crash"
    watch()
    workers.start(name="healthy")
    job = wait_final(job_id, timeout=300, tick=watch)
    log = open(full.log_path).read()
    assert "disk is full (No space left on device)" in log, log[-3000:]
    assert any("disk is full" in e for e in errors), errors
    assert job.state != JobState.FAILED, job.failure_reason
    assert_job_complete_and_valid(job_id, s3)
