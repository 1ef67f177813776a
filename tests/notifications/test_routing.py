"""Alerts reach the channels their routes name: grouped per burst, throttled, reminded and
resolved, over real SMTP, a real chat webhook on loopback and SNS on moto_server."""

import urllib.request

import boto3
import pytest
from django.urls import reverse
from django.utils import timezone

from core.models import Alert, AlertSeverity, AlertState
from core.roles import Role
from core.services import alert_raise, alert_resolve
from notifications import services
from notifications.models import Channel, Message, MessageState, Pending, Route

pytestmark = pytest.mark.django_db


def flush_and_deliver(channel: Channel) -> Message | None:
    """What the worker does once the burst's window has passed."""
    message = services.channel_flush(channel_id=channel.pk)
    if message is not None:
        services.message_deliver(message_id=message.pk)
        message.refresh_from_db()
    return message


def raise_(title: str, *, source: str = "security", severity=AlertSeverity.CRITICAL, key: str = "") -> Alert:
    return alert_raise(
        source=source, severity=severity, title=title, detail=f"{title} detail", dedup_key=key or title
    )


@pytest.fixture
def chat(chat_receiver, redis_conn):
    Route.objects.create(team="media-ops", sources=[], min_severity=AlertSeverity.WARNING)
    channel = Channel.objects.create(team="media-ops", name="chat", kind="slack", target=chat_receiver.url)
    return channel


def test_a_burst_is_one_chat_message_and_its_resolution_another(chat, chat_receiver):
    first = raise_("SSH open to the world on i-1")
    raise_("Backup copy damaged", source="backups")
    for _ in range(5):
        raise_("SSH open to the world on i-1")  # repeats while the burst waits: still one item
    message = flush_and_deliver(chat)
    assert message.state == MessageState.SENT and len(chat_receiver.bodies) == 1
    text = chat_receiver.bodies[0]["text"]
    assert (
        "2 alerts" in text
        and "SSH open to the world on i-1 (x6)" in text
        and "backups: Backup copy damaged" in text
    )
    # Repeats after the message are throttled: nothing due until the reminder.
    raise_("SSH open to the world on i-1")
    assert flush_and_deliver(chat) is None and len(chat_receiver.bodies) == 1
    alert_resolve(alert=first)
    flush_and_deliver(chat)
    assert len(chat_receiver.bodies) == 2
    assert chat_receiver.bodies[1]["text"].startswith("*[Reelflow] 1 resolved: SSH open to the world on i-1*")
    assert not Pending.objects.filter(alert=first).exists()


def test_an_open_alert_is_reminded_and_an_acknowledged_one_is_not(chat, chat_receiver, settings):
    settings.NOTIFICATIONS_REMINDER_SECONDS = 0
    alert = raise_("Worker fleet version differs")
    flush_and_deliver(chat)
    assert services.reminders_due() == 1
    flush_and_deliver(chat)
    assert "STILL OPEN [critical] security: Worker fleet version differs" in chat_receiver.bodies[-1]["text"]
    Alert.objects.filter(pk=alert.pk).update(state=AlertState.ACKNOWLEDGED)
    assert services.reminders_due() == 0


def test_routes_choose_by_source_and_severity(chat, chat_receiver):
    Route.objects.all().delete()
    Route.objects.create(team="media-ops", sources=["backups"], min_severity=AlertSeverity.CRITICAL)
    raise_("backup warning", source="backups", severity=AlertSeverity.WARNING)
    raise_("security critical", source="security")
    assert flush_and_deliver(chat) is None, "neither matches the route"
    raise_("backup critical", source="backups")
    flush_and_deliver(chat)
    assert len(chat_receiver.bodies) == 1 and "backup critical" in chat_receiver.bodies[0]["text"]


def test_an_alert_routed_to_email_arrives_grouped_over_smtp(smtp_server, settings, redis_conn):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_server.port
    Route.objects.create(team="backup-team", sources=["backups"], min_severity=AlertSeverity.WARNING)
    channel = Channel.objects.create(
        team="backup-team", name="mail", kind="email", target="ops@example.com, oncall@example.com"
    )
    for n in range(3):
        raise_(f"Object {n} lost", source="backups")
    flush_and_deliver(channel)
    (mail,) = smtp_server.messages
    assert mail["Subject"] == "[Reelflow CRITICAL] 3 alerts"
    assert mail["To"] == "ops@example.com, oncall@example.com"
    body = mail.get_payload()
    assert all(f"OPEN [critical] backups: Object {n} lost" in body for n in range(3))


def test_sns_publish_reaches_the_topic_in_moto(moto_server, settings, redis_conn):  # noqa: F811
    urllib.request.urlopen(
        urllib.request.Request(f"{moto_server}/moto-api/reset", method="POST"), timeout=10
    ).read()
    settings.AWS_ENDPOINT_URL_SNS = moto_server
    settings.AWS_ACCESS_KEY_ID = settings.AWS_SECRET_ACCESS_KEY = "testing"
    kw = {
        "region_name": "us-east-1",
        "endpoint_url": moto_server,
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    sns, sqs = boto3.client("sns", **kw), boto3.client("sqs", **kw)
    topic = sns.create_topic(Name="ops-alerts")["TopicArn"]
    queue_url = sqs.create_queue(QueueName="ops-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    Route.objects.create(team="sec", sources=["security"], min_severity=AlertSeverity.WARNING)
    channel = Channel.objects.create(team="sec", name="sns", kind="sns", target=topic)
    raise_("Unauthorized launch of i-9")
    assert flush_and_deliver(channel).state == MessageState.SENT
    (received,) = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=2)["Messages"]
    assert "Unauthorized launch of i-9" in received["Body"]


def test_a_failing_channel_is_retried_then_raises_its_own_alert_elsewhere(
    chat, chat_receiver, settings, make_user, client
):
    settings.NOTIFICATIONS_MAX_ATTEMPTS = 2
    broken = Channel.objects.create(
        team="media-ops", name="broken", kind="slack", target="http://127.0.0.1:9/x"
    )
    raise_("Disk full on the backup target", source="backups")
    message = flush_and_deliver(broken)
    assert message.state == MessageState.PENDING and message.attempts == 1, "retried, not given up"
    services.message_deliver(message_id=message.pk)
    message.refresh_from_db()
    assert message.state == MessageState.FAILED and [a["ok"] for a in message.log] == [False, False]
    assert "connect" in message.log[0]["error"].lower()
    alert = Alert.objects.get(source="notifications")
    assert alert.severity == AlertSeverity.CRITICAL and "media-ops/broken" in alert.title
    # The failure reaches the team's working channel, and is not sent to the broken one.
    flush_and_deliver(chat)
    assert any("media-ops/broken (slack) is failing" in b["text"] for b in chat_receiver.bodies)
    assert not Pending.objects.filter(channel=broken, alert=alert).exists()
    client.force_login(make_user("olga", role=Role.OPERATIONS))
    page = client.get(reverse("notifications:home")).content.decode()
    assert "failing since" in page and f"Alert #{alert.pk}" in page
    # Fixed: the next delivery succeeds and the channel's alert resolves itself.
    Channel.objects.filter(pk=broken.pk).update(target=chat_receiver.url)
    raise_("Another one", source="backups")
    flush_and_deliver(broken)
    alert.refresh_from_db()
    broken.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and broken.failing_since is None


def test_custodian_notify_reaches_named_teams_beyond_routes(chat, chat_receiver):
    Route.objects.all().delete()
    alert = raise_("c7n: worker-not-debug")
    assert services.notify(alert=alert, teams=["media-ops"]) == 1
    assert services.notify(alert=alert, channels=["nobody/none"]) == 0
    flush_and_deliver(chat)
    assert "c7n: worker-not-debug" in chat_receiver.bodies[0]["text"]


def test_the_sweep_redoes_what_a_lost_rq_job_dropped(chat, redis_conn, settings):
    import django_rq
    from django.utils import timezone
    from rq.job import Job

    raise_("Lost in Redis")  # its flush would be scheduled after commit; the test never commits
    stuck = Message.objects.create(
        channel=chat, subject="s", body="b", created_at=timezone.now() - timezone.timedelta(hours=1)
    )
    result = services.sweep()
    assert result["flushes"] == 1 and result["requeued"] == 1
    queue = django_rq.get_queue(settings.NOTIFICATIONS_QUEUE)
    assert f"notify-flush-{chat.pk}" in queue.scheduled_job_registry.get_job_ids()
    assert (
        Job.fetch(f"notify-{stuck.pk}-1", connection=redis_conn).func_name
        == "notifications.jobs.message_deliver"
    )
    assert services.sweep()["requeued"] == 0, "queued once"


def test_every_alert_source_reaches_the_routed_channel(chat, redis_conn):
    """Security's, the backups' and the ops watchers' own raise functions all route here."""
    from backups.services.common import alert_for
    from ops import watch
    from pipeline.models import JobState
    from security.services.alerts import security_alert_raise
    from tests.backups.factories import BackupPolicyFactory
    from tests.factories import EncodeJobFactory

    security_alert_raise(severity=AlertSeverity.CRITICAL, title="Port 22 open", dedup_key="sec-1")
    policy = BackupPolicyFactory()
    alert_for(
        policy=policy,
        severity=AlertSeverity.WARNING,
        title="Backup damaged",
        detail="",
        dedup="d1",
        evidence={},
    )
    EncodeJobFactory(state=JobState.FAILED, failure_reason="bad input", finished_at=timezone.now())
    watch.failed_jobs_watch()
    sources = set(Pending.objects.filter(channel=chat, due=True).values_list("alert__source", flat=True))
    assert sources == {"security", "backups", "pipeline"}
