"""A fresh start: the scheduler waits for S3 and its buckets (`storage_wait`, first in the
Procfile's scheduler line), and a run-level alert is resolved, with an event, by the next run
of the same policy that succeeds."""

import subprocess
import sys
import time

import pytest

from backups import jobs
from backups.models import BackupRun, RunState, RunTrigger
from backups.services import runs
from core.models import Alert, AlertSeverity, AlertState, Event
from devservices.stack import procfile_commands
from tests.backups.conftest import run_policy
from tests.conftest import ROOT, wait_until, worker_env


def test_the_scheduler_starts_only_after_storage_is_ready():
    assert procfile_commands()["scheduler"].startswith(".venv/bin/python manage.py storage_wait && ")


def test_storage_wait_blocks_on_a_fresh_server_until_its_buckets_exist(tmp_path, tag):
    from devservices.seaweed import start_seaweed

    server = start_seaweed(data_dir=tmp_path / "fresh", access_key="fresh-ak", secret_key="fresh-secret-0123456789")
    buckets = {"S3_BUCKET_INGEST": f"i{tag}", "S3_BUCKET_MEDIA": f"m{tag}", "S3_BUCKET_BACKUP": f"b{tag}"}
    env = worker_env(
        {"S3_ENDPOINT_URL": server.endpoint_url, "S3_ACCESS_KEY": "fresh-ak", "S3_SECRET_KEY": "fresh-secret-0123456789",
         **buckets}
    )  # fmt: skip
    waiter = subprocess.Popen(  # noqa: S603
        [sys.executable, "manage.py", "storage_wait", "--timeout", "60", "--interval", "0.2"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        # Its first line says what it waits for (however long the process takes to start).
        first = waiter.stdout.readline()
        assert "do not exist yet (reelflow_setup creates them)" in first, first
        assert waiter.poll() is None  # nothing exists yet: still waiting
        client = server.client()
        for name in list(buckets.values())[:2]:
            client.create_bucket(Bucket=name)
        time.sleep(1)
        assert waiter.poll() is None  # one bucket is still missing
        client.create_bucket(Bucket=buckets["S3_BUCKET_BACKUP"])
        rest, _ = waiter.communicate(timeout=30)
        output = first + rest
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
        server.stop()
    assert waiter.returncode == 0, output
    assert "do not exist yet (reelflow_setup creates them)" in output and "storage ready" in output


def test_storage_wait_gives_up_with_a_readable_line(tmp_path):
    env = worker_env({"S3_ENDPOINT_URL": "http://127.0.0.1:9", "S3_BUCKET_BACKUP": "never"})
    done = subprocess.run(  # noqa: S603
        [sys.executable, "manage.py", "storage_wait", "--timeout", "2", "--interval", "0.5"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode != 0
    assert "gave up after 2 s: S3 at http://127.0.0.1:9 does not answer yet" in done.stderr


@pytest.mark.django_db(transaction=True)
def test_a_run_alert_is_resolved_with_an_event_when_the_next_run_of_the_policy_succeeds(
    make_policy, put, s3, rq_worker_process, tag
):
    missing = f"late-{tag}"
    policy = make_policy(offsite=False, destination_bucket=missing)
    put(f"uploads/t{tag}/a.bin", b"first bytes")
    first = run_policy(policy)  # the bucket does not exist yet: the start-up race
    assert first.state == RunState.FAILED and "NoSuchBucket" in first.error
    alert = Alert.objects.get(dedup_key=f"backups:{policy.name}:run:permission")
    assert alert.severity == AlertSeverity.CRITICAL and alert.state == AlertState.OPEN
    other = make_policy(offsite=False, destination_bucket=missing, name=f"other{tag}")
    other_alert = Alert.objects.get(pk=run_policy(other).failures.get().alert_id)

    s3.create_bucket(Bucket=missing)
    second = runs.run_start(policy=policy, trigger=RunTrigger.SCHEDULE, enqueue=True)
    rq_worker_process(jobs.QUEUE)
    wait_until(lambda: BackupRun.objects.get(pk=second.pk).finished_at, timeout=60, message="the next run")

    second.refresh_from_db()
    assert second.state == RunState.SUCCEEDED and second.objects_copied == 1
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolved_at is not None
    event = Event.objects.get(type="backup.alerts.resolved", subject_id=str(second.pk))
    assert event.payload["alerts"] == [alert.pk] and f"run #{second.pk}" in event.payload["reason"]
    assert Event.objects.filter(type="alert.resolved", subject_id=str(alert.pk)).exists()
    # Another policy's alert is not proved over by this policy's run.
    other_alert.refresh_from_db()
    assert other_alert.state == AlertState.OPEN
