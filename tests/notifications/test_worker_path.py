"""The whole path through a real control worker (RQ, its scheduler, Redis): alerts raised in a
burst arrive at a chat webhook on loopback as one message, their resolution as another, and the
test button's message arrives too."""

import time

import pytest
from django.urls import reverse

from core.models import AlertSeverity
from core.roles import Role
from core.services import alert_raise, alert_resolve
from notifications.models import Channel, Message, MessageState, Route
from tests.conftest import wait_until


@pytest.fixture
def control_worker(rq_worker_process, transactional_db, settings):
    settings.NOTIFICATIONS_GROUP_SECONDS = 2
    return rq_worker_process(settings.NOTIFICATIONS_QUEUE, "--with-scheduler")


def test_one_message_per_burst_then_a_resolve_through_the_worker(control_worker, chat_receiver):
    Route.objects.create(team="media-ops", sources=[], min_severity=AlertSeverity.WARNING)
    Channel.objects.create(team="media-ops", name="chat", kind="slack", target=chat_receiver.url)
    alerts = [
        alert_raise(
            source="backups", severity=AlertSeverity.CRITICAL, title=f"Copy {n} failed", dedup_key=f"b{n}"
        )
        for n in range(4)
    ]
    wait_until(lambda: chat_receiver.bodies, timeout=30, message="the burst's message")
    time.sleep(3)  # a second message for the same burst would have arrived by now
    assert len(chat_receiver.bodies) == 1 and "4 alerts" in chat_receiver.bodies[0]["text"]
    for alert in alerts[:2]:
        alert_resolve(alert=alert)
    wait_until(lambda: len(chat_receiver.bodies) == 2, timeout=30, message="the resolve message")
    assert "2 resolved" in chat_receiver.bodies[1]["text"]
    # The receiver answers before the worker records the attempt.
    wait_until(lambda: set(Message.objects.values_list("state", flat=True)) == {MessageState.SENT}, timeout=10,
               message="both messages recorded as sent")  # fmt: skip


def test_the_test_button_sends_through_the_worker(control_worker, chat_receiver, client, make_user):
    channel = Channel.objects.create(team="media-ops", name="chat", kind="slack", target=chat_receiver.url)
    url = reverse("notifications:channel_test", kwargs={"channel_id": channel.pk})
    client.force_login(make_user("pat", role=Role.PUBLISHER))
    assert client.post(url).status_code == 403
    client.force_login(make_user("olga", role=Role.OPERATIONS))
    response = client.post(url, follow=True)
    assert "queued for media-ops/chat" in response.content.decode()
    wait_until(lambda: chat_receiver.bodies, timeout=30, message="the test message")
    assert (
        "Test notification" in chat_receiver.bodies[0]["text"] and "olga" in chat_receiver.bodies[0]["text"]
    )
    page = client.get(reverse("notifications:home")).content.decode()
    assert "[Reelflow] Test notification" in page and "ok" in page
