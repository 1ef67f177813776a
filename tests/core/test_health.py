import pytest
from django.urls import reverse

from core import s3 as s3_module
from core.roles import Role
from tests.conftest import wait_until


@pytest.fixture
def ops_client(client, make_user):
    client.force_login(make_user("ops", role=Role.OPERATIONS))
    return client


@pytest.mark.django_db
def test_healthz_is_503_until_a_worker_runs_then_200(ops_client, s3, redis_conn, rq_worker_process):
    report = ops_client.get(reverse("healthz"))
    assert report.status_code == 503
    checks = report.json()["checks"]
    assert checks["database"]["ok"] and checks["redis"]["ok"] and checks["s3"]["ok"]
    assert checks["ffmpeg"]["ok"] and checks["ffmpeg"]["ffprobe"].startswith("ffprobe version")
    assert checks["workers"] == {"ok": False, "error": "RuntimeError: no RQ worker is running", "ms": checks["workers"]["ms"]}

    rq_worker_process("default", "encode")
    answer = wait_until(
        lambda: (r := ops_client.get(reverse("healthz"))).status_code == 200 and r, timeout=30, message="a live worker"
    )
    body = answer.json()
    assert body["ok"] is True
    assert body["checks"]["workers"]["count"] == 1
    assert set(body["checks"]["workers"]["queues"]) == {"default", "encode"}


@pytest.mark.django_db
def test_healthz_reports_s3_down(ops_client, s3, redis_conn, settings):
    settings.S3_ENDPOINT_URL = "http://127.0.0.1:9"  # discard port: nothing listens
    settings.S3_MAX_ATTEMPTS = 1
    s3_module.clients_reset()
    try:
        body = ops_client.get(reverse("healthz")).json()
    finally:
        s3_module.clients_reset()
    assert body["ok"] is False
    assert body["checks"]["s3"]["ok"] is False
    assert "Could not connect" in body["checks"]["s3"]["error"]


@pytest.mark.django_db
def test_anonymous_healthz_shows_states_but_no_details(client, s3, redis_conn):
    body = client.get(reverse("healthz")).json()
    assert set(body["checks"]) == {"database", "redis", "s3", "ffmpeg", "workers"}
    assert all(set(check) == {"ok"} for check in body["checks"].values())
