"""A run killed with SIGKILL in the middle of copying continues where it stopped when run
again: finished objects are not copied again, and nothing is missed."""

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest

from backups.models import BackupRun, CopyTask, ObjectVersion, RunPhase, RunState, TaskState, VersionState
from tests.backups.conftest import OFFSITE_BUCKET
from tests.conftest import ROOT, wait_until, worker_env

OBJECTS = 200


def _backup_run(policy_name: str, workers: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "manage.py", "backup_run", "--policy", policy_name, "--workers", str(workers), "--verify", "none"],
        cwd=ROOT, env=worker_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.mark.django_db(transaction=True)
def test_a_run_killed_mid_copy_resumes_without_recopying(make_policy, s3, offsite, tag):
    from django.conf import settings

    policy = make_policy()
    keys = [f"uploads/t{tag}/{i:04d}.bin" for i in range(OBJECTS)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: s3.put_object(Bucket=settings.S3_BUCKET_INGEST, Key=k, Body=os.urandom(4_000)), keys))

    first = _backup_run(policy.name, workers=1)  # slow enough to be caught mid-copy
    try:
        wait_until(
            lambda: CopyTask.objects.filter(run__policy=policy, state=TaskState.DONE).count() >= 30,
            timeout=60, interval=0.05, message="30 copies done",
        )
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    assert first.returncode == -signal.SIGKILL

    run = BackupRun.objects.get(policy=policy)
    assert run.finished_at is None and run.phase == RunPhase.COPY
    done_before = dict(
        CopyTask.objects.filter(run=run, state=TaskState.DONE).values_list("pk", "finished_at")
    )
    assert 30 <= len(done_before) < OBJECTS, "the kill must land in the middle of the copy"
    # Copies finish before their results are written to the database (in batches, every
    # 0.5 s): the ones the kill caught in between are in the backup but not in the ledger.
    written = sum(
        page.get("KeyCount", 0)
        for page in offsite.get_paginator("list_objects_v2").paginate(Bucket=OFFSITE_BUCKET, Prefix=f"t{tag}/sha256/")
    )
    unrecorded = written - len(done_before)
    assert 0 <= unrecorded < OBJECTS - len(done_before)

    second = _backup_run(policy.name, workers=8)
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 0, output
    assert f"resuming run #{run.pk}" in output

    run.refresh_from_db()
    assert run.state == RunState.SUCCEEDED
    tasks = CopyTask.objects.filter(run=run)
    assert tasks.count() == OBJECTS  # no task was created twice
    assert set(tasks.values_list("state", flat=True)) == {TaskState.DONE}
    # Tasks finished before the kill were not touched again.
    assert dict(tasks.filter(pk__in=done_before).values_list("pk", "finished_at")) == done_before
    assert ObjectVersion.objects.filter(source__policy=policy, state=VersionState.PROTECTED).count() == OBJECTS
    # Bytes were uploaded once per object: exactly the copies the first run made but did not
    # record were found already written (deduplicated) when taken over; the rest were uploaded.
    assert run.objects_copied == OBJECTS and run.objects_deduplicated == unrecorded
    assert run.bytes_copied == (OBJECTS - run.objects_deduplicated) * 4_000
