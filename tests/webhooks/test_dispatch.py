"""Events become deliveries in the transaction that records them, and only where they should."""

import pytest
from django.conf import settings
from django.db import transaction

from core.roles import Role
from core.services import event_record
from webhooks import services
from webhooks.models import Delivery, DeliveryState, EndpointState

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(make_user):
    return make_user("alice", role=Role.PUBLISHER)


@pytest.fixture
def bob(make_user):
    return make_user("bob", role=Role.PUBLISHER)


def job_event(owner, type_="job.published"):
    return event_record(type=type_, subject=("pipeline.encodejob", 7), owner=owner, payload={"asset": 3})


def test_an_owned_event_becomes_one_pending_delivery_per_matching_endpoint(
    alice, bob, django_capture_on_commit_callbacks
):
    first, _ = services.endpoint_create(owner=alice, url="http://127.0.0.1:9/a")
    second, _ = services.endpoint_create(owner=alice, url="http://127.0.0.1:9/b", types=["job.published"])
    only_failures, _ = services.endpoint_create(owner=alice, url="http://127.0.0.1:9/c", types=["job.failed"])
    services.endpoint_create(owner=bob, url="http://127.0.0.1:9/bob")
    with django_capture_on_commit_callbacks() as callbacks:
        event = job_event(alice)
    deliveries = Delivery.objects.filter(event=event)
    assert {d.endpoint_id for d in deliveries} == {first.pk, second.pk}
    assert all(
        d.state == DeliveryState.PENDING and d.next_attempt_at and d.attempts_made == 0 for d in deliveries
    )
    assert len({d.key for d in deliveries}) == 2, "each delivery has its own idempotency key"
    # One enqueue after commit for the event's deliveries (beside it, ops records the event's
    # metrics on commit: ops/metrics).
    enqueues = [c for c in callbacks if c.__qualname__.startswith("_enqueue_on_commit")]
    assert len(enqueues) == 1, "one enqueue after commit for the event's deliveries"


def test_events_without_owner_disabled_endpoints_and_webhook_events_are_not_sent(alice):
    endpoint, _ = services.endpoint_create(owner=alice, url="http://127.0.0.1:9/a", types=["*"])
    event_record(type="job.published", subject=("pipeline.encodejob", 1), payload={})
    event_record(type="webhook.endpoint_updated", subject=endpoint, owner=alice)
    services.endpoint_disable(endpoint=endpoint, actor=alice)
    job_event(alice)
    assert not Delivery.objects.exists()
    assert endpoint.__class__.objects.get(pk=endpoint.pk).state == EndpointState.DISABLED


def test_a_rolled_back_transition_leaves_no_delivery(alice):
    services.endpoint_create(owner=alice, url="http://127.0.0.1:9/a")
    with pytest.raises(RuntimeError), transaction.atomic():
        job_event(alice)
        raise RuntimeError("the transition failed after recording its event")
    assert not Delivery.objects.exists()


def test_endpoint_events_name_the_host_never_the_secret_or_path(alice):
    from core.models import Event

    endpoint, secret = services.endpoint_create(owner=alice, url="http://127.0.0.1:9/hook?token=s3cr3t-token")
    rotated = services.endpoint_secret_rotate(endpoint=endpoint, actor=alice, overlap_seconds=24 * 3600)
    services.endpoint_ping(endpoint=endpoint, actor=alice)
    services.endpoint_delete(endpoint=endpoint, actor=alice)
    logged = " ".join(str(e.payload) for e in Event.objects.filter(type__startswith="webhook."))
    assert Event.objects.filter(type__startswith="webhook.").count() == 4
    for hidden in (secret, rotated, "s3cr3t-token"):
        assert hidden not in logged
    assert "127.0.0.1" in logged


def test_service_refuses_what_the_form_would(alice, settings):
    settings.WEBHOOKS_MAX_ENDPOINTS = 1
    with pytest.raises(services.WebhookRefused, match="Choose at least one"):
        services.endpoint_create(owner=alice, url="http://127.0.0.1:9/a", types=[])
    with pytest.raises(services.WebhookRefused, match="Unknown event types: nope"):
        services.endpoint_create(owner=alice, url="http://127.0.0.1:9/a", types=["nope"])
    services.endpoint_create(owner=alice, url="http://127.0.0.1:9/a")
    with pytest.raises(services.WebhookRefused, match="the most allowed"):
        services.endpoint_create(owner=alice, url="http://127.0.0.1:9/b")


def test_sweep_queues_due_deliveries_once_until_the_job_is_presumed_lost(
    alice, redis_conn, django_capture_on_commit_callbacks
):
    import django_rq
    from django.utils import timezone

    services.endpoint_create(owner=alice, url="http://127.0.0.1:9/a")
    queue = django_rq.get_queue(settings.WEBHOOKS_QUEUE)
    with django_capture_on_commit_callbacks(execute=True):
        job_event(alice)
    assert queue.count == 1, "queued on commit"
    assert services.deliveries_sweep() == 0, "a job is already queued for it"
    redis_conn.flushdb()  # Redis forgets every queue
    later = timezone.now() + services.REQUEUE_AFTER
    with django_capture_on_commit_callbacks(execute=True):
        assert services.deliveries_sweep(now=later) == 1
        assert services.deliveries_sweep(now=later) == 0, "queued once per REQUEUE_AFTER"
    assert queue.count == 1
    assert queue.jobs[0].func_name == "webhooks.jobs.delivery_attempt"
