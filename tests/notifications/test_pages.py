"""/ops/notifications/: operations staff only; bad input is answered on the page, not with a 500."""

import pytest
from django.urls import reverse

from core.roles import Role
from notifications.models import Channel, Route

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops(client, make_user):
    client.force_login(make_user("olga", role=Role.OPERATIONS))
    return client


def test_only_operations_staff_open_the_page(client, make_user):
    url = reverse("notifications:home")
    assert client.get(url).status_code == 302
    client.force_login(make_user("sam", role=Role.SECURITY))
    assert client.get(url).status_code == 403


@pytest.mark.parametrize(
    ("kind", "target", "error"),
    [
        ("email", "ops@example.com, not-an-address", "&#x27;not-an-address&#x27; is not an email address."),
        ("sns", "ops-alerts", "An SNS topic ARN looks like"),
        ("slack", "ftp://chat.example.com/x", "This URL cannot receive notifications"),
    ],
)
def test_a_bad_target_is_refused_with_the_reason(ops, kind, target, error):
    response = ops.post(
        reverse("notifications:channel_add"), {"team": "ops", "name": "c", "kind": kind, "target": target}
    )
    assert response.status_code == 400 and error in response.content.decode()
    assert not Channel.objects.exists()


def test_channels_and_routes_are_added_and_deleted_with_events(ops):
    response = ops.post(
        reverse("notifications:channel_add"),
        {"team": "ops", "name": "mail", "kind": "email", "target": "ops@example.com"},
        follow=True,
    )
    assert "Channel ops/mail added" in response.content.decode()
    ops.post(
        reverse("notifications:route_add"),
        {"team": "ops", "sources": ["backups", "security"], "min_severity": "critical"},
    )
    route = Route.objects.get()
    assert route.sources == ["backups", "security"] and route.min_severity == "critical"
    bad = ops.post(
        reverse("notifications:route_add"), {"team": "ops", "sources": ["nope"], "min_severity": "critical"}
    )
    assert bad.status_code == 400
    ops.post(reverse("notifications:route_delete", kwargs={"route_id": route.pk}))
    ops.post(reverse("notifications:channel_delete", kwargs={"channel_id": Channel.objects.get().pk}))
    assert not Channel.objects.exists() and not Route.objects.exists()
    from core.models import Event

    assert set(Event.objects.filter(type__startswith="notifications.").values_list("type", flat=True)) == {
        "notifications.channel_created", "notifications.channel_deleted",
        "notifications.route_created", "notifications.route_deleted",
    }  # fmt: skip
