"""The watchers raise alerts for failed jobs, lanes with work and no live worker, and unhealthy
dependencies, and resolve them once the condition is gone."""

import pytest
from django.utils import timezone

from core.models import Alert, AlertState
from ops import watch
from pipeline.models import JobState
from pipeline.queues import Entry, enqueue
from tests.factories import EncodeJobFactory

pytestmark = pytest.mark.django_db


def test_a_failed_job_raises_one_alert_resolved_when_it_is_restarted(redis_conn):
    job = EncodeJobFactory(
        state=JobState.FAILED, failure_reason="ffmpeg rejected the command", finished_at=timezone.now()
    )
    watch.failed_jobs_watch()
    watch.failed_jobs_watch()
    alert = Alert.objects.get(source="pipeline")
    assert alert.title == f"Job #{job.pk} failed" and "rejected" in alert.detail and alert.occurrences == 1
    job.state = JobState.ENCODING
    job.save(update_fields=["state"])
    watch.failed_jobs_watch()
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED
    watch.failed_jobs_watch()
    assert Alert.objects.filter(source="pipeline").count() == 1


def test_work_waiting_on_a_lane_without_a_worker_raises_an_alert(redis_conn):
    watch.workers_watch(conn=redis_conn)
    assert not Alert.objects.filter(source="workers").exists(), "nothing waits: no alert"
    enqueue(Entry.ENCODE_UNIT, 1, rq_id="unit-1-x")
    watch.workers_watch(conn=redis_conn)
    alert = Alert.objects.get(source="workers")
    assert alert.title == "No live worker serves the media lane; 1 job(s) wait"
    redis_conn.delete("rq:queue:encode")
    watch.workers_watch(conn=redis_conn)
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED


def test_a_dependency_down_raises_a_critical_alert(redis_conn, settings):
    settings.S3_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens there
    settings.S3_MAX_ATTEMPTS = 1
    from core import s3

    s3.clients_reset()
    try:
        watch.health_watch()
    finally:
        s3.clients_reset()
    alert = Alert.objects.get(source="health", dedup_key="health:s3")
    assert alert.severity == "critical" and alert.title == "s3 is down" and alert.detail
