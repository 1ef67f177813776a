"""The webhook pages: who sees what, forms that explain themselves, secrets shown once, CSRF."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from core.models import Event
from core.roles import Role
from core.services import event_record
from webhooks import services
from webhooks.models import Delivery, DeliveryState, Endpoint, EndpointState

pytestmark = pytest.mark.django_db


@pytest.fixture
def alice(make_user):
    return make_user("alice", role=Role.PUBLISHER)


@pytest.fixture
def bob(make_user):
    return make_user("bob", role=Role.PUBLISHER)


@pytest.fixture
def operator(make_user):
    return make_user("olga", role=Role.OPERATIONS)


def logged_in(user, **kwargs) -> Client:
    c = Client(**kwargs)
    c.force_login(user)
    return c


def delivered(endpoint):
    event = event_record(
        type="job.published", subject=("pipeline.encodejob", 5), owner=endpoint.owner, payload={"asset": 1}
    )
    return Delivery.objects.get(event=event, endpoint=endpoint)


def test_publisher_adds_an_endpoint_and_sees_its_secret_once(alice):
    c = logged_in(alice)
    form = c.get(reverse("webhooks:endpoint_new"))
    checked = re.findall(r'value="([^"]+)"[^>]*checked', form.content.decode())
    assert sorted(checked) == ["asset.*", "job.*", "rendition.*"], "default: job, rendition and asset events"

    response = c.post(
        reverse("webhooks:endpoint_new"),
        {
            "url": "http://127.0.0.1:9/hook",
            "description": "CMS",
            "event_types": ["job.*", "rendition.playable"],
        },
    )
    endpoint = Endpoint.objects.get(owner=alice)
    assert response.status_code == 302 and response["Location"] == reverse(
        "webhooks:endpoint", args=[endpoint.pk]
    )
    assert endpoint.event_types == ["job.*", "rendition.playable"] and endpoint.state == EndpointState.ACTIVE

    first = c.get(response["Location"])
    assert endpoint.secret in first.content.decode()
    assert "no-store" in first["Cache-Control"]
    again = c.get(response["Location"]).content.decode()
    assert endpoint.secret not in again
    assert endpoint.secret_hint in again


def test_form_errors_say_what_to_fix(alice):
    c = logged_in(alice)
    response = c.post(reverse("webhooks:endpoint_new"), {"url": "ftp://example.com/x"})
    text = response.content.decode()
    assert response.status_code == 200
    assert "Use an http:// or https:// URL." in text
    assert "Choose at least one kind of event to send." in text
    assert not Endpoint.objects.exists()


def test_rotation_shows_the_new_secret_once_and_keeps_the_old_one_for_a_day(alice):
    endpoint, old = services.endpoint_create(owner=alice, url="http://127.0.0.1:9/hook")
    c = logged_in(alice)
    response = c.post(reverse("webhooks:endpoint_rotate", args=[endpoint.pk]), {"overlap": str(24 * 3600)})
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.secret != old and endpoint.previous_secret == old
    page = c.get(reverse("webhooks:endpoint", args=[endpoint.pk])).content.decode()
    assert endpoint.secret in page and old not in page
    assert endpoint.secret not in c.get(reverse("webhooks:endpoint", args=[endpoint.pk])).content.decode()


def test_disable_enable_ping_edit_and_delete(alice):
    endpoint, _ = services.endpoint_create(owner=alice, url="http://127.0.0.1:9/hook")
    c = logged_in(alice)
    c.post(reverse("webhooks:endpoint_disable", args=[endpoint.pk]))
    assert Endpoint.objects.get(pk=endpoint.pk).state == EndpointState.DISABLED
    refused = c.post(reverse("webhooks:endpoint_ping", args=[endpoint.pk]), follow=True)
    assert "enable it, then send the test ping" in refused.content.decode()
    c.post(reverse("webhooks:endpoint_enable", args=[endpoint.pk]))
    c.post(reverse("webhooks:endpoint_ping", args=[endpoint.pk]))
    assert Delivery.objects.get(endpoint=endpoint).event.type == "webhook.ping"

    c.post(
        reverse("webhooks:endpoint_edit", args=[endpoint.pk]),
        {
            "url": "http://127.0.0.1:9/new",
            "description": "",
            "event_types": ["asset.*"],
        },
    )
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.event_types) == ("http://127.0.0.1:9/new", ["asset.*"])

    confirm = c.get(reverse("webhooks:endpoint_delete", args=[endpoint.pk]))
    assert "1 delivery" in confirm.content.decode()
    c.post(reverse("webhooks:endpoint_delete", args=[endpoint.pk]))
    assert not Endpoint.objects.exists() and not Delivery.objects.exists()
    types = list(
        Event.objects.filter(type__startswith="webhook.").values_list("type", flat=True).order_by("id")
    )
    assert types == [
        "webhook.endpoint_created",
        "webhook.endpoint_disabled",
        "webhook.endpoint_enabled",
        "webhook.ping",
        "webhook.endpoint_updated",
        "webhook.endpoint_deleted",
    ]


def test_another_publisher_gets_404_everywhere(alice, bob):
    endpoint, _ = services.endpoint_create(owner=alice, url="http://127.0.0.1:9/hook")
    delivery = delivered(endpoint)
    c = logged_in(bob)
    assert endpoint.url not in c.get(reverse("webhooks:endpoints")).content.decode()
    for name in ["endpoint", "endpoint_edit", "endpoint_delete"]:
        assert c.get(reverse(f"webhooks:{name}", args=[endpoint.pk])).status_code == 404, name
    for name in [
        "endpoint_edit",
        "endpoint_rotate",
        "endpoint_disable",
        "endpoint_enable",
        "endpoint_ping",
        "endpoint_delete",
    ]:
        assert c.post(reverse(f"webhooks:{name}", args=[endpoint.pk]), {"overlap": "0"}).status_code == 404, (
            name
        )
    assert c.get(reverse("webhooks:delivery", args=[delivery.pk])).status_code == 404
    assert c.post(reverse("webhooks:delivery_redeliver", args=[delivery.pk])).status_code == 404
    endpoint.refresh_from_db()
    assert endpoint.state == EndpointState.ACTIVE and Endpoint.objects.filter(pk=endpoint.pk).exists()
    delivery.refresh_from_db()
    assert delivery.redeliver_requested_by is None


def test_operations_see_every_endpoint_read_only_and_may_redeliver(
    alice, bob, operator, django_assert_max_num_queries
):
    mine, secret = services.endpoint_create(owner=alice, url="http://127.0.0.1:9/alice")
    theirs, _ = services.endpoint_create(owner=bob, url="http://127.0.0.1:9/bob")
    for endpoint in (mine, theirs):
        for _ in range(3):
            delivered(endpoint)
    c = logged_in(operator)
    with django_assert_max_num_queries(8):
        listing = c.get(reverse("webhooks_ops:endpoints")).content.decode()
    assert "http://127.0.0.1:9/alice" in listing and "http://127.0.0.1:9/bob" in listing
    with django_assert_max_num_queries(10):
        deliveries = c.get(reverse("webhooks_ops:deliveries")).content.decode()
    assert deliveries.count("job.published") >= 6
    detail = c.get(reverse("webhooks_ops:endpoint", args=[mine.pk])).content.decode()
    assert secret not in detail and mine.secret_hint not in detail
    assert reverse("webhooks:endpoint_rotate", args=[mine.pk]) not in detail, (
        "no publisher actions for operations"
    )

    delivery = Delivery.objects.filter(endpoint=theirs).first()
    Delivery.objects.filter(pk=delivery.pk).update(state=DeliveryState.FAILED, next_attempt_at=None)
    page = c.get(reverse("webhooks_ops:delivery", args=[delivery.pk])).content.decode()
    assert "Redeliver now" in page and str(delivery.key) in page
    c.post(reverse("webhooks_ops:delivery_redeliver", args=[delivery.pk]))
    delivery.refresh_from_db()
    assert delivery.state == DeliveryState.PENDING and delivery.redeliver_requested_by == operator
    # Operations staff cannot use the publisher's pages, nor publishers the operations pages.
    assert c.get(reverse("webhooks:endpoint", args=[mine.pk])).status_code == 403
    assert c.post(reverse("webhooks:endpoint_disable", args=[mine.pk])).status_code == 403
    assert logged_in(alice).get(reverse("webhooks_ops:endpoints")).status_code == 403


def test_publisher_list_page_queries_stay_flat(alice, django_assert_max_num_queries):
    for n in range(4):
        endpoint, _ = services.endpoint_create(owner=alice, url=f"http://127.0.0.1:9/{n}")
        delivered(endpoint)
    c = logged_in(alice)
    with django_assert_max_num_queries(7):
        assert c.get(reverse("webhooks:endpoints")).status_code == 200
    endpoint = Endpoint.objects.filter(owner=alice).first()
    with django_assert_max_num_queries(10):
        assert c.get(reverse("webhooks:endpoint", args=[endpoint.pk])).status_code == 200


def test_every_action_needs_a_csrf_token(alice):
    endpoint, _ = services.endpoint_create(owner=alice, url="http://127.0.0.1:9/hook")
    delivery = delivered(endpoint)
    c = logged_in(alice, enforce_csrf_checks=True)
    posts = (
        [reverse("webhooks:endpoint_new")]
        + [
            reverse(f"webhooks:{name}", args=[endpoint.pk])
            for name in [
                "endpoint_edit",
                "endpoint_rotate",
                "endpoint_disable",
                "endpoint_enable",
                "endpoint_ping",
                "endpoint_delete",
            ]
        ]
        + [reverse("webhooks:delivery_redeliver", args=[delivery.pk])]
    )
    for url in posts:
        assert c.post(url, {"overlap": "0"}).status_code == 403, url
    assert Endpoint.objects.get(pk=endpoint.pk).state == EndpointState.ACTIVE
