"""Runs on real RQ workers, storage events in (the shared event log and S3 notifications),
and the scheduler's tick."""

import os
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from backups import jobs
from backups.models import BackupPolicy, BackupRun, ObjectVersion, RunState, RunTrigger, ScanRequest
from backups.services import intake, runs
from core.roles import Role
from core.services import event_record
from tests.conftest import wait_until


def _failed_jobs() -> list[str]:
    import django_rq

    queue = django_rq.get_queue("backup")
    registry = queue.failed_job_registry
    return [str(queue.fetch_job(job_id).exc_info)[-800:] for job_id in registry.get_job_ids()]


@pytest.mark.django_db(transaction=True)
def test_runs_queued_by_the_page_and_by_an_upload_event_are_carried_out_by_a_backup_worker(
    make_policy, make_user, put, rq_worker_process, tag
):
    manual = make_policy(name=f"manual{tag}")
    evented = make_policy(sources=("media",))
    BackupPolicy.objects.exclude(pk__in=[manual.pk, evented.pk]).update(enabled=False)
    put(f"uploads/t{tag}/w.bin", os.urandom(5000))
    media = settings.S3_BUCKET_MEDIA
    put(f"assets/t{tag}/old.bin", os.urandom(300), bucket=media)  # not announced: left to the scheduled sweep
    key = put(f"assets/t{tag}/new.mp4", os.urandom(3000), bucket=media)
    event_record(type="backup.test", subject=("test", 1), payload={"bucket": media, "key": key})
    client = Client()
    client.force_login(make_user("opsw", role=Role.OPERATIONS))

    client.post(reverse("backups:run_start"), {"policy": manual.pk})
    jobs.tick()  # the event becomes a run of `evented` (`manual` already has one)
    # With the scheduler, a transient error's rq.Retry runs within the test instead of after it.
    rq_worker_process("backup", "--with-scheduler")
    try:
        wait_until(lambda: not BackupRun.objects.filter(finished_at__isnull=True).exists(), timeout=120,
                   message="both runs to finish")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; failed jobs: {_failed_jobs()}") from None

    run = BackupRun.objects.get(policy=manual)
    assert run.trigger == RunTrigger.MANUAL
    assert run.state == RunState.SUCCEEDED and run.objects_copied == 1
    scoped = BackupRun.objects.get(policy=evented)
    assert scoped.trigger == RunTrigger.EVENT and scoped.scope[0]["prefix"] == key
    assert scoped.state == RunState.SUCCEEDED and scoped.objects_scanned == 1
    assert list(ObjectVersion.objects.filter(source__policy=evented).values_list("key", flat=True)) == [key]
    assert ScanRequest.objects.get(policy=evented).taken_by == scoped


@pytest.mark.django_db
def test_s3_notifications_ask_for_a_scan_of_created_and_removed_objects(make_policy, tag):
    policy = make_policy()
    key = f"uploads/t{tag}/a b.mov"
    body = {"Records": [
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": settings.S3_BUCKET_INGEST}, "object": {"key": key.replace(" ", "+")}}},
        {"eventName": "ObjectRemoved:Delete", "s3": {"bucket": {"name": settings.S3_BUCKET_INGEST}, "object": {"key": f"uploads/t{tag}/gone"}}},
        {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "elsewhere"}, "object": {"key": "x"}}},
    ]}
    client = Client()
    url = reverse("backups:s3_events")
    assert client.post(url, body, content_type="application/json").status_code == 401
    headers = {"Authorization": f"Bearer {settings.S3_EVENTS_TOKEN}"}
    assert client.post(url, {"Records": "no"}, content_type="application/json", headers=headers).status_code == 400
    response = client.post(url, body, content_type="application/json", headers=headers)
    assert response.status_code == 202
    assert set(ScanRequest.objects.filter(policy=policy).values_list("prefix", flat=True)) == {key, f"uploads/t{tag}/gone"}
    client.post(url, body, content_type="application/json", headers=headers)
    assert ScanRequest.objects.filter(policy=policy).count() == 2  # waiting ones are not doubled


@pytest.mark.django_db
def test_the_event_log_is_followed_once(make_policy, tag):
    policy = make_policy(sources=("media",))
    BackupPolicy.objects.exclude(pk=policy.pk).update(enabled=False)
    intake.events_follow()
    event_record(type="job.published", subject=("pipeline.encodejob", 7), payload={"asset": f"t{tag}/x"})
    event_record(type="job.probing", subject=("pipeline.encodejob", 7), payload={"asset": 7})
    assert intake.events_follow() == 1
    assert intake.events_follow() == 0
    assert ScanRequest.objects.get(policy=policy).prefix == f"assets/t{tag}/x/"


@pytest.mark.django_db
def test_the_tick_starts_due_policies_and_resumes_runs_nobody_drives(make_policy, redis_conn):
    import django_rq

    policy = make_policy(interval_minutes=60)
    BackupPolicy.objects.exclude(pk=policy.pk).update(enabled=False)
    started = runs.scheduled_runs_start()
    assert [r.policy_id for r in started] == [policy.pk]
    run = started[0]
    assert runs.scheduled_runs_start() == []  # one unfinished run per policy

    django_rq.get_queue("backup").empty()
    BackupRun.objects.filter(pk=run.pk).update(
        owner="another-host:4242", heartbeat_at=timezone.now() - timedelta(hours=1),
        created_at=timezone.now() - timedelta(hours=1),
    )
    assert runs.runs_stalled_resume() == [run.pk]
    assert f"backup-run-{run.pk}" in django_rq.get_queue("backup").job_ids
    assert runs.runs_stalled_resume() == []  # already queued
