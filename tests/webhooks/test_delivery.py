"""Real deliveries: events recorded here, attempts made by real `rqworker default --burst`
processes, received by a real HTTP server on 127.0.0.1."""

import json
import re
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from core.models import Alert, Event
from core.services import event_record
from tests.conftest import wait_until
from webhooks import services
from webhooks.models import AttemptTrigger, Delivery, DeliveryState, EndpointState
from webhooks.verify import InvalidWebhook, verify_webhook

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def documented_verify():
    """The verification function exactly as docs/webhooks.md shows it, executed."""
    text = DOC.read_text()
    block = re.search(r"<!-- verify.py begins -->\n```python\n(.*?)```\n<!-- verify.py ends -->", text, re.S)
    assert block, "docs/webhooks.md must show the verification snippet between its markers"
    namespace: dict = {}
    exec(compile(block.group(1), str(DOC), "exec"), namespace)  # noqa: S102 - our own documentation
    return namespace["verify_webhook"], namespace["InvalidWebhook"]


def publish(owner, type_="job.published", **payload):
    return event_record(
        type=type_, subject=("pipeline.encodejob", 41), owner=owner, payload={"asset": 9, **payload}
    )


def test_documented_snippet_is_webhooks_verify_py():
    text = DOC.read_text()
    block = re.search(r"<!-- verify.py begins -->\n```python\n(.*?)```\n<!-- verify.py ends -->", text, re.S)
    source = (Path(__file__).resolve().parents[2] / "webhooks" / "verify.py").read_text()
    assert block and block.group(1) == source, "docs/webhooks.md and webhooks/verify.py must not drift apart"


def test_delivery_is_signed_json_that_the_documented_snippet_verifies(
    pub, endpoint_for, receiver, run_default_worker
):
    server = receiver()
    endpoint, secret = endpoint_for(pub, server.url)
    event = publish(pub, master="assets/9/master.m3u8")
    sent_after = int(time.time())

    run_default_worker()

    assert len(server.requests) == 1
    request = server.requests[0]
    headers, body = request["headers"], request["body"]
    delivery = Delivery.objects.get(event=event, endpoint=endpoint)
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"] == "Reelflow-Webhooks/1"
    assert headers["Reelflow-Event-Type"] == "job.published"
    assert headers["Reelflow-Delivery"] == str(delivery.key)
    assert sent_after <= int(headers["Reelflow-Timestamp"]) <= time.time()
    assert re.fullmatch(r"v1=[0-9a-f]{64}", headers["Reelflow-Signature"])
    assert json.loads(body) == {
        "id": event.pk,
        "type": "job.published",
        "created_at": event.created_at.isoformat(),
        "subject": {"type": "job", "id": "41"},
        "data": {"asset": 9, "master": "assets/9/master.m3u8"},
        # Asset 9 does not exist (an event about a deleted asset): its block says so.
        "asset": {"id": 9, "state": "deleted", "title": None, "playback": None},
    }

    verify, invalid = documented_verify()
    verify(
        secret=secret,
        body=body,
        timestamp=headers["Reelflow-Timestamp"],
        signature=headers["Reelflow-Signature"],
    )
    verify_webhook(
        secret=secret,
        body=body,
        timestamp=headers["Reelflow-Timestamp"],
        signature=headers["Reelflow-Signature"],
    )
    # What it must refuse: another secret, a changed body, a replay older than five minutes.
    for kwargs in (
        {"secret": "whsec_wrong"},
        {"body": body.replace(b"job.published", b"job.failed")},
        {"now": int(headers["Reelflow-Timestamp"]) + 301},
        {"timestamp": "not-a-number"},
        {"signature": ""},
    ):
        arguments = {
            "secret": secret,
            "body": body,
            "timestamp": headers["Reelflow-Timestamp"],
            "signature": headers["Reelflow-Signature"],
            **kwargs,
        }
        with pytest.raises(invalid):
            verify(**arguments)
        with pytest.raises(InvalidWebhook):
            verify_webhook(**arguments)

    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED and delivery.attempts_made == 1
    attempt = delivery.attempts.get()
    assert attempt.succeeded and attempt.status_code == 200 and attempt.response_excerpt == "thanks"
    assert attempt.duration_ms is not None and attempt.finished_at and attempt.worker


def test_failing_receiver_is_retried_with_backoff_then_succeeds(
    pub, endpoint_for, receiver, run_default_worker
):
    server = receiver(500, 503)
    endpoint, secret = endpoint_for(pub, server.url)
    event = publish(pub)
    fast = {"WEBHOOKS_RETRY_BASE_SECONDS": "1"}  # 1 s, 2 s, ... instead of 30 s, 1 min, ...

    run_default_worker(env=fast)
    delivery = Delivery.objects.get(event=event)
    first = delivery.attempts.get()
    assert (first.status_code, first.succeeded, first.error) == (500, False, "Answered HTTP 500.")
    assert first.response_excerpt == "boom: 500"
    assert delivery.state == DeliveryState.PENDING
    gap = (delivery.next_attempt_at - first.finished_at).total_seconds()
    assert 0.8 - 0.05 <= gap <= 1.2 + 0.05, gap
    before_due = delivery.next_attempt_at - timezone.timedelta(milliseconds=100)
    assert services.deliveries_sweep(now=before_due) == 0, "not due yet: the sweep leaves it alone"

    for expected_gap in (2, None):  # the second retry waits about twice as long
        wait_until(lambda: timezone.now() >= Delivery.objects.get(pk=delivery.pk).next_attempt_at, timeout=10)
        assert services.deliveries_sweep() == 1
        run_default_worker(env=fast)
        delivery.refresh_from_db()
        if expected_gap:
            last = delivery.attempts.order_by("-number").first()
            gap = (delivery.next_attempt_at - last.finished_at).total_seconds()
            assert expected_gap * 0.8 - 0.05 <= gap <= expected_gap * 1.2 + 0.05, gap

    assert delivery.state == DeliveryState.DELIVERED
    attempts = list(delivery.attempts.order_by("number"))
    assert [(a.number, a.status_code, a.succeeded) for a in attempts] == [
        (1, 500, False),
        (2, 503, False),
        (3, 200, True),
    ]
    assert all(a.trigger == AttemptTrigger.AUTOMATIC for a in attempts)
    # Three requests, one idempotency key, each signed for its own timestamp.
    assert len(server.requests) == 3
    assert {r["headers"]["Reelflow-Delivery"] for r in server.requests} == {str(delivery.key)}
    for r in server.requests:
        verify_webhook(
            secret=secret,
            body=r["body"],
            timestamp=r["headers"]["Reelflow-Timestamp"],
            signature=r["headers"]["Reelflow-Signature"],
        )
    spacing = [
        b["received_at"] - a["received_at"]
        for a, b in zip(server.requests, server.requests[1:], strict=False)
    ]
    assert spacing[0] >= 0.8 and spacing[1] >= 1.6, spacing
    endpoint.refresh_from_db()
    assert endpoint.failing_since is None, "a success clears the failure streak"


def test_receiver_that_never_answers_times_out(pub, endpoint_for, silent_port, run_default_worker):
    endpoint, _ = endpoint_for(pub, f"http://127.0.0.1:{silent_port}/hook")
    event = publish(pub)

    run_default_worker(env={"WEBHOOKS_TIMEOUT": "2"})

    delivery = Delivery.objects.get(event=event)
    attempt = delivery.attempts.get()
    assert attempt.status_code is None and not attempt.succeeded
    assert attempt.error == "No answer within 2 s."
    assert 1900 <= attempt.duration_ms <= 4000, attempt.duration_ms
    assert delivery.state == DeliveryState.PENDING and delivery.next_attempt_at > attempt.finished_at
    endpoint.refresh_from_db()
    assert endpoint.failing_since == attempt.started_at


def test_refused_connection_tls_error_and_redirect_are_failures_with_reasons(
    pub, endpoint_for, receiver, run_default_worker
):
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    closed, _ = endpoint_for(pub, f"http://127.0.0.1:{closed_port}/hook?token=url-credential")
    redirecting = receiver(302)
    moved, _ = endpoint_for(pub, redirecting.url)
    plain = receiver()
    not_tls, _ = endpoint_for(pub, plain.url.replace("http://", "https://"))
    publish(pub)

    run_default_worker()

    refused = Delivery.objects.get(endpoint=closed).attempts.get()
    assert refused.error.startswith("Could not connect:") and refused.status_code is None
    assert "Connection refused" in refused.error
    assert "url-credential" not in refused.error, "the URL's query may be a credential: never stored or logged"
    redirected = Delivery.objects.get(endpoint=moved).attempts.get()
    assert redirected.status_code == 302 and "redirects are not followed" in redirected.error
    assert len(redirecting.requests) == 1
    handshake = Delivery.objects.get(endpoint=not_tls).attempts.get()
    assert handshake.error.startswith("TLS error:") and handshake.status_code is None
    assert plain.requests == []


def test_redelivery_by_hand_sends_again_with_the_same_key(
    pub, endpoint_for, receiver, run_default_worker, make_user
):
    from core.roles import Role

    server = receiver()
    endpoint, secret = endpoint_for(pub, server.url)
    event = publish(pub)
    run_default_worker()
    delivery = Delivery.objects.get(event=event)
    assert delivery.state == DeliveryState.DELIVERED

    operator = make_user(f"ops{uuid.uuid4().hex[:4]}", role=Role.OPERATIONS)
    services.delivery_redeliver(delivery=delivery, actor=operator)
    with pytest.raises(services.WebhookRefused, match="already under way"):
        services.delivery_redeliver(delivery=delivery, actor=operator)
    run_default_worker()

    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.DELIVERED and delivery.attempts_made == 2
    manual = delivery.attempts.get(number=2)
    assert manual.trigger == AttemptTrigger.MANUAL and manual.actor == operator and manual.succeeded
    assert [r["headers"]["Reelflow-Delivery"] for r in server.requests] == [str(delivery.key)] * 2
    assert server.requests[0]["body"] == server.requests[1]["body"]
    assert Event.objects.filter(type="webhook.redelivery_requested", actor=operator).count() == 1


def test_test_ping_reaches_only_its_endpoint(pub, endpoint_for, receiver, run_default_worker):
    pinged, other = receiver(), receiver()
    endpoint, secret = endpoint_for(pub, pinged.url, types=["*"])
    endpoint_for(pub, other.url, types=["*"])

    services.endpoint_ping(endpoint=endpoint, actor=pub)
    run_default_worker()

    assert other.requests == []
    assert [r["headers"]["Reelflow-Event-Type"] for r in pinged.requests] == ["webhook.ping"]
    body = pinged.json_bodies()[0]
    assert body["subject"] == {"type": "webhook_endpoint", "id": str(endpoint.pk)}
    verify_webhook(
        secret=secret,
        body=pinged.requests[0]["body"],
        timestamp=pinged.requests[0]["headers"]["Reelflow-Timestamp"],
        signature=pinged.requests[0]["headers"]["Reelflow-Signature"],
    )


def test_rotation_with_overlap_signs_with_both_secrets(pub, endpoint_for, receiver, run_default_worker):
    server = receiver()
    endpoint, old = endpoint_for(pub, server.url)
    new = services.endpoint_secret_rotate(endpoint=endpoint, actor=pub, overlap_seconds=24 * 3600)
    publish(pub)
    run_default_worker()
    (request,) = server.requests
    header = request["headers"]["Reelflow-Signature"]
    assert len(header.split(",")) == 2
    for secret in (new, old):
        verify_webhook(
            secret=secret,
            body=request["body"],
            timestamp=request["headers"]["Reelflow-Timestamp"],
            signature=header,
        )

    services.endpoint_secret_rotate(endpoint=endpoint, actor=pub, overlap_seconds=0)
    publish(pub)
    run_default_worker()
    latest = server.requests[-1]
    assert len(latest["headers"]["Reelflow-Signature"].split(",")) == 1
    with pytest.raises(InvalidWebhook):
        verify_webhook(
            secret=new,
            body=latest["body"],
            timestamp=latest["headers"]["Reelflow-Timestamp"],
            signature=latest["headers"]["Reelflow-Signature"],
        )


def test_disabled_endpoint_holds_pending_deliveries_until_enabled(
    pub, endpoint_for, receiver, run_default_worker
):
    server = receiver()
    endpoint, _ = endpoint_for(pub, server.url)
    event = publish(pub)
    services.endpoint_disable(endpoint=endpoint, actor=pub)
    publish(pub, "job.failed")  # while disabled: no delivery at all
    run_default_worker()
    assert server.requests == []
    assert Delivery.objects.filter(endpoint=endpoint).count() == 1
    assert services.deliveries_sweep() == 0

    services.endpoint_enable(endpoint=endpoint, actor=pub)
    assert services.deliveries_sweep() == 1
    run_default_worker()
    assert [r["headers"]["Reelflow-Event-Type"] for r in server.requests] == ["job.published"]
    assert Delivery.objects.get(event=event).state == DeliveryState.DELIVERED


def test_delivery_gives_up_after_the_window_with_an_event_and_an_alert(
    pub, endpoint_for, receiver, run_default_worker
):
    server = receiver(default_status=500)
    endpoint, _ = endpoint_for(pub, server.url)
    event = publish(pub)
    # A delivery created a day ago (fixture data; the window is measured from creation).
    Delivery.objects.filter(event=event).update(
        created_at=timezone.now() - timezone.timedelta(hours=24, seconds=1)
    )

    run_default_worker()

    delivery = Delivery.objects.get(event=event)
    assert delivery.state == DeliveryState.FAILED and delivery.next_attempt_at is None
    failed = Event.objects.get(type="webhook.delivery_failed")
    assert (
        failed.owner == pub and failed.payload["endpoint"] == endpoint.pk and failed.payload["attempts"] == 1
    )
    assert Alert.objects.filter(source="webhooks", subject_id=str(endpoint.pk)).count() == 1
    assert services.deliveries_sweep() == 0


def test_endpoint_failing_for_three_days_is_disabled(pub, endpoint_for, receiver, run_default_worker):
    server = receiver(default_status=500)
    endpoint, _ = endpoint_for(pub, server.url)
    endpoint.__class__.objects.filter(pk=endpoint.pk).update(
        failing_since=timezone.now() - timezone.timedelta(days=3)
    )
    publish(pub)

    run_default_worker()

    endpoint.refresh_from_db()
    assert endpoint.state == EndpointState.AUTO_DISABLED
    assert "Every attempt failed since" in endpoint.state_reason and "HTTP 500" in endpoint.state_reason
    assert Event.objects.filter(type="webhook.endpoint_auto_disabled", owner=pub).count() == 1
    publish(pub)
    assert Delivery.objects.filter(endpoint=endpoint).count() == 1, "no new deliveries once disabled"


def test_nothing_is_lost_when_redis_is_flushed(pub, endpoint_for, receiver, run_default_worker, redis_conn):
    server = receiver()
    endpoint_for(pub, server.url)
    event = publish(pub)
    redis_conn.flushdb()  # the queued attempt is gone
    run_default_worker()
    assert server.requests == []

    later = timezone.now() + services.REQUEUE_AFTER
    assert services.deliveries_sweep(now=later) == 1
    run_default_worker()
    assert [r["headers"]["Reelflow-Event-Type"] for r in server.requests] == ["job.published"]
    assert Delivery.objects.get(event=event).state == DeliveryState.DELIVERED


def test_cron_sweeps_every_ten_seconds(redis_conn):
    from rq.cron import CronScheduler

    scheduler = CronScheduler(connection=redis_conn)
    scheduler.load_config_from_file("config/cron.py")
    jobs = {f"{job.func.__module__}.{job.func.__name__}": job for job in scheduler._cron_jobs}
    sweep = jobs["webhooks.jobs.deliveries_sweep"]
    assert sweep.queue_name == settings.WEBHOOKS_QUEUE == "webhooks" and sweep.interval == 10
