"""/metrics: who may scrape it, and that its families move during a real encode."""

import pytest
from django.urls import reverse
from prometheus_client.parser import text_string_to_metric_families

from core import metrics
from core.roles import Role
from core.s3 import S3Target, client
from pipeline.models import EncodeJob, JobState, QualityTask
from tests.conftest import ENCODE_LANE_1, wait_until
from tests.pipeline.clips import make_clip
from tests.pipeline.test_faults import start_worker, stop
from tests.pipeline.test_pipeline_e2e import announce

FAMILIES = {
    "reelflow_queue_depth", "reelflow_queue_oldest_job_age_seconds", "reelflow_workers", "reelflow_jobs",
    "reelflow_units", "reelflow_unit_duration_seconds", "reelflow_unit_cpu_seconds", "reelflow_encode_speed_fps",
    "reelflow_time_to_playable_seconds", "reelflow_time_to_published_seconds", "reelflow_qc_duration_seconds",
    "reelflow_backup_runs", "reelflow_backup_copied_bytes", "reelflow_backup_verify_coverage_ratio",
    "reelflow_backup_findings", "reelflow_violations_open", "reelflow_alerts", "reelflow_webhook_delivery_seconds",
    "reelflow_webhook_delivery_failures", "reelflow_s3_errors",
}  # fmt: skip


def scrape(client_, **headers) -> dict[str, list]:
    response = client_.get(reverse("ops:metrics"), **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return {f.name: f.samples for f in text_string_to_metric_families(response.content.decode())}


def value(families: dict, sample_name: str, **labels) -> float:
    family = (
        sample_name.removesuffix("_total").removesuffix("_count").removesuffix("_sum").removesuffix("_bucket")
    )
    return sum(
        s.value for s in families.get(family, [])
        if s.name == sample_name and all(s.labels.get(k) == v for k, v in labels.items())
    )  # fmt: skip


@pytest.mark.django_db
def test_metrics_answer_the_token_and_operations_sessions_only(client, make_user, settings, redis_conn):
    settings.METRICS_TOKEN = "scrape-secret-0123456789"
    url = reverse("ops:metrics")
    anonymous = client.get(url)
    assert anonymous.status_code == 401 and anonymous["WWW-Authenticate"].startswith("Bearer")
    assert client.get(url, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert FAMILIES <= set(scrape(client, HTTP_AUTHORIZATION="Bearer scrape-secret-0123456789"))
    client.force_login(make_user("pat", role=Role.PUBLISHER))
    assert client.get(url).status_code == 403
    client.force_login(make_user("olga", role=Role.OPERATIONS))
    assert FAMILIES <= set(scrape(client))


@pytest.mark.django_db
def test_a_scrape_makes_a_bounded_number_of_queries(
    client, make_user, redis_conn, django_assert_max_num_queries
):
    from tests.backups.factories import BackupPolicyFactory
    from tests.console.factories import job_with_units

    publisher = make_user("pat", role=Role.PUBLISHER)
    for _ in range(3):
        job_with_units(publisher, unit_states={"h264-240p": ["done", "running"]})
    BackupPolicyFactory()
    BackupPolicyFactory()
    client.force_login(make_user("olga", role=Role.OPERATIONS))
    with django_assert_max_num_queries(15):  # session, user and its permissions; 11 grouped reads
        families = scrape(client)
    assert value(families, "reelflow_units", state="running") == 3


@pytest.mark.django_db
def test_an_empty_token_setting_lets_no_bearer_in(client, settings, redis_conn):
    settings.METRICS_TOKEN = ""
    assert client.get(reverse("ops:metrics"), HTTP_AUTHORIZATION="Bearer ").status_code == 401


def test_s3_errors_are_counted_by_operation(s3, redis_conn, settings):
    metrics.reset()
    target = S3Target(settings.S3_ENDPOINT_URL, settings.S3_ACCESS_KEY, "not-the-secret", settings.S3_REGION)
    bad = client(target)
    with pytest.raises(Exception, match="SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId|403"):
        bad.list_objects_v2(Bucket=settings.S3_BUCKET_INGEST)
    stored = metrics.read_all()["reelflow_s3_errors"]
    assert any('"operation":"ListObjectsV2"' in key and n >= 1 for key, n in stored.items()), stored


@pytest.mark.slow
@ENCODE_LANE_1
def test_scrape_during_a_real_encode_shows_the_work_moving(
    tmp_path,
    publisher,
    upload,
    s3,
    redis_conn,
    client,
    make_user,
    settings,
):
    settings.REELFLOW_CHUNK_SECONDS = 4
    settings.REELFLOW_SEGMENT_SECONDS = 2
    metrics.reset()
    client.force_login(make_user("olga", role=Role.OPERATIONS))
    clip = make_clip(tmp_path / "m.mp4", duration=8, width=640, height=360, fps=25)
    job_id = announce(upload(clip, publisher, profile="fast")).job_id
    before = scrape(client)
    assert value(before, "reelflow_queue_depth", queue="ingest") == 1, "the probe waits in the ingest queue"
    assert value(before, "reelflow_jobs", state="queued", profile="fast") == 1
    assert value(before, "reelflow_units_finished_total") == 0
    worker = start_worker()
    try:
        during = wait_until(
            lambda: (
                (f := scrape(client)) and value(f, "reelflow_units_finished_total", outcome="done") > 0 and f
            ),
            timeout=180,
            interval=0.5,
            message="a unit to finish",
        )
        # The test's worker serves every queue: its lane label names both lanes.
        assert sum(s.value for s in during["reelflow_workers"] if "media" in s.labels["lane"].split("+")) >= 1
        job = wait_until(
            lambda: (
                (j := EncodeJob.objects.get(pk=job_id)).state in (JobState.PUBLISHED, JobState.FAILED) and j
            ),
            timeout=240,
            interval=0.5,
            message="the job to finish",
        )
        # Quality is measured beside (and after) publication: wait for its tasks too.
        wait_until(
            lambda: (
                not QualityTask.objects.filter(job_id=job_id).exclude(state__in=["done", "failed"]).exists()
            ),
            timeout=240,
            interval=0.5,
            message="the quality measurement",
        )
    finally:
        stop(worker)
    assert job.state == JobState.PUBLISHED
    after = scrape(client)
    assert value(after, "reelflow_jobs", state="published", profile="fast") == 1
    assert (
        value(after, "reelflow_units_finished_total", outcome="done")
        > value(during, "reelflow_units_finished_total", outcome="done")
        or value(during, "reelflow_units_finished_total", outcome="done") == job.units.count()
    )
    assert value(after, "reelflow_unit_duration_seconds_count", codec="libx264") >= 1
    assert value(after, "reelflow_unit_cpu_seconds_sum") > 0
    assert value(after, "reelflow_encode_speed_fps_count") >= 1
    assert value(after, "reelflow_time_to_playable_seconds_count") == 1, "the first playable rendition only"
    assert value(after, "reelflow_time_to_published_seconds_count") == 1
    assert value(after, "reelflow_qc_duration_seconds_count") >= 1
    assert value(after, "reelflow_queue_depth", queue="encode") == 0


@pytest.mark.django_db
def test_verify_coverage_counts_each_policys_own_window(client, make_user, redis_conn):
    from datetime import timedelta

    from django.utils import timezone

    from tests.backups.factories import BackupPolicyFactory, ObjectVersionFactory, PolicySourceFactory

    weekly = PolicySourceFactory(policy=BackupPolicyFactory(name="weekly", verify_within_days=7))
    daily = PolicySourceFactory(policy=BackupPolicyFactory(name="daily", verify_within_days=1))
    three_days_ago = timezone.now() - timedelta(days=3)
    for source in (weekly, daily):
        ObjectVersionFactory(source=source, protected=True)  # verified now
        ObjectVersionFactory(source=source, protected=True, verified_at=three_days_ago)
    ObjectVersionFactory(source=daily)  # not copied yet: not counted
    client.force_login(make_user("olga", role=Role.OPERATIONS))
    families = scrape(client)
    assert value(families, "reelflow_backup_verify_coverage_ratio", policy="weekly") == 1.0
    assert value(families, "reelflow_backup_verify_coverage_ratio", policy="daily") == 0.5
