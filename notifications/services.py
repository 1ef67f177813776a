"""Every write of the notifications app: routing alerts to channels, collecting a burst into one
message, reminders while an alert stays open, a message when it is resolved, delivery with
retries, and the alert a failing channel raises about itself.

Flow: core.services calls `alert_changed` inside the transaction that raised, repeated or
resolved an alert. Each routed channel gets a due `Pending` row, and a flush of that channel is
scheduled NOTIFICATIONS_GROUP_SECONDS later (once: later changes join the same flush). The flush
writes one `Message` with every due item and queues its delivery; a failed attempt is retried
after NOTIFICATIONS_RETRY_SECONDS[n]; the last failure marks the channel failing and raises a
`notifications` alert, which is routed to the team's other channels, never to the failing one.
"""

import logging
import time
from datetime import timedelta

import django_rq
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus

from core import metrics
from core.models import Alert, AlertSeverity, AlertState
from core.services import alert_raise, alert_resolve, event_record
from notifications import transports
from notifications.models import Channel, Message, MessageKind, MessageState, Pending, Route

logger = logging.getLogger(__name__)

SOURCE = "notifications"


def _channels_for(alert: Alert) -> list[Channel]:
    teams = {route.team for route in Route.objects.filter(enabled=True) if route.matches(alert)}
    channels = list(Channel.objects.filter(enabled=True, team__in=teams)) if teams else []
    if alert.source == SOURCE:
        # A channel's own failure goes to the team's other channels only.
        channels = [c for c in channels if str(c.pk) != alert.subject_id]
    return channels


def alert_changed(alert: Alert, change: str) -> None:
    """core's alert sink: mark what each routed channel must hear, and schedule its flush."""
    _pending_mark(alert, change, _channels_for(alert))


def _pending_mark(alert: Alert, change: str, channels: list[Channel]) -> None:
    for channel in channels:
        pending, created = Pending.objects.select_for_update().get_or_create(channel=channel, alert=alert)
        if change == "resolved":
            if not created or pending.due:
                pending.due, pending.resolved = True, True
                pending.save(update_fields=["due", "resolved"])
            else:
                pending.delete()  # the channel never heard of it: nothing to resolve
                continue
        elif change == "raised" or pending.notified_at is None:
            # A repeat of an alert the channel already heard of waits for the reminder
            # (throttling); a new one, or one still waiting for its burst, is due.
            if not pending.due:
                pending.due = True
                pending.save(update_fields=["due"])
        else:
            continue
        channel_id = channel.pk
        transaction.on_commit(lambda channel_id=channel_id: flush_schedule(channel_id=channel_id))


def notify(*, alert: Alert, teams: list[str] | None = None, channels: list[str] | None = None) -> int:
    """Send `alert` to these teams' channels and to these channels ("team/name"), on top of its
    routes: the API for Custodian's `notify` action (docs/operations.md). Call inside or outside
    a transaction; returns the number of channels that will hear of it."""
    wanted = Channel.objects.none()
    if teams:
        wanted = wanted | Channel.objects.filter(team__in=teams)
    for ref in channels or []:
        team, _, name = ref.partition("/")
        wanted = wanted | Channel.objects.filter(team=team, name=name)
    found = list(wanted.filter(enabled=True).distinct())
    with transaction.atomic():
        _pending_mark(alert, "raised", found)
    return len(found)


def flush_schedule(*, channel_id: int) -> None:
    """Queue the channel's flush once, NOTIFICATIONS_GROUP_SECONDS from now; a flush already
    waiting takes the new items too (one message per burst). Runs after commit: with Redis
    down the items stay due and the minute's sweep schedules the flush."""
    try:
        _flush_schedule(channel_id)
    except (RedisError, OSError) as exc:
        logger.warning("notification flush of channel %s not scheduled (the sweep will): %s", channel_id, exc)


def _flush_schedule(channel_id: int) -> None:
    queue = django_rq.get_queue(settings.NOTIFICATIONS_QUEUE)
    rq_id = f"notify-flush-{channel_id}"
    try:
        status = Job.fetch(rq_id, connection=queue.connection).get_status()
        if status in (JobStatus.SCHEDULED, JobStatus.QUEUED):
            return
    except NoSuchJobError:
        pass
    queue.enqueue_in(
        timedelta(seconds=settings.NOTIFICATIONS_GROUP_SECONDS), "notifications.jobs.channel_flush", channel_id,
        job_id=rq_id, result_ttl=0, failure_ttl=86400,
    )  # fmt: skip


_VERB = {"opened": "OPEN", "repeated": "AGAIN", "reminder": "STILL OPEN", "resolved": "RESOLVED"}


def _item(alert: Alert, change: str) -> dict:
    return {"id": alert.pk, "change": change, "severity": alert.severity, "source": alert.source,
            "title": alert.title, "occurrences": alert.occurrences, "detail": alert.detail[:500]}  # fmt: skip


def _render(items: list[dict]) -> tuple[str, str]:
    opened = [i for i in items if i["change"] != "resolved"]
    resolved = [i for i in items if i["change"] == "resolved"]
    parts = []
    if opened:
        parts.append(f"{len(opened)} alert{'s' if len(opened) > 1 else ''}")
    if resolved:
        parts.append(f"{len(resolved)} resolved")
    worst = "critical" if any(i["severity"] == AlertSeverity.CRITICAL for i in opened) else ""
    subject = f"[Reelflow{' CRITICAL' if worst else ''}] " + ", ".join(parts)
    if len(items) == 1:
        subject += f": {items[0]['title']}"
    lines = []
    for i in items:
        times = f" (x{i['occurrences']})" if i["occurrences"] > 1 else ""
        lines.append(f"{_VERB[i['change']]} [{i['severity']}] {i['source']}: {i['title']}{times}")
        if i["detail"] and i["change"] != "resolved":
            lines.append(f"    {i['detail']}")
    lines.append(f"\n{settings.SITE_URL}/ops/notifications/")
    return subject[:200], "\n".join(lines)


@transaction.atomic
def channel_flush(*, channel_id: int) -> Message | None:
    """Collect the channel's due items into one message and queue its delivery."""
    channel = Channel.objects.select_for_update().filter(pk=channel_id, enabled=True).first()
    if channel is None:
        return None
    due = list(Pending.objects.select_for_update().filter(channel=channel, due=True).select_related("alert"))
    if not due:
        return None
    now = timezone.now()
    items = []
    for pending in due:
        alert = pending.alert
        if pending.resolved or alert.state == AlertState.RESOLVED:
            change = "resolved"
        elif pending.notified_at is None:
            change = "opened"
        else:
            change = "reminder" if alert.occurrences == pending.notified_occurrences else "repeated"
        items.append(_item(alert, change))
        if change == "resolved":
            pending.delete()
        else:
            pending.due, pending.notified_at, pending.notified_occurrences = False, now, alert.occurrences
            pending.save(update_fields=["due", "notified_at", "notified_occurrences"])
    subject, body = _render(items)
    message = Message.objects.create(channel=channel, subject=subject, body=body, items=items)
    _deliver_on_commit(message.pk, attempt=1)
    return message


def reminders_due(*, now=None) -> int:
    """Alerts still open (not acknowledged, not resolved) that a channel last heard of more than
    NOTIFICATIONS_REMINDER_SECONDS ago are due again, as a reminder. Returns how many."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.NOTIFICATIONS_REMINDER_SECONDS)
    rows = Pending.objects.filter(
        due=False, notified_at__lt=cutoff, alert__state=AlertState.OPEN, channel__enabled=True
    ).values_list("pk", "channel_id")
    rows = list(rows)
    with transaction.atomic():
        Pending.objects.filter(pk__in=[pk for pk, _ in rows]).update(due=True)
        for channel_id in {c for _, c in rows}:
            transaction.on_commit(lambda channel_id=channel_id: flush_schedule(channel_id=channel_id))
    return len(rows)


def sweep(*, now=None) -> dict:
    """Once a minute: reminders, plus what a lost RQ job left behind (a flush never scheduled,
    a delivery never queued, a worker killed mid-attempt): due items older than the group
    window get their flush, and messages still sending with no RQ job get their next attempt."""
    now = now or timezone.now()
    reminded = reminders_due(now=now)
    window = timedelta(seconds=settings.NOTIFICATIONS_GROUP_SECONDS * 2 + 60)
    due_channels = set(Pending.objects.filter(due=True).values_list("channel_id", flat=True))
    for channel_id in due_channels:
        flush_schedule(channel_id=channel_id)
    queue = django_rq.get_queue(settings.NOTIFICATIONS_QUEUE)
    requeued = 0
    for message_id, attempts in Message.objects.filter(
        state=MessageState.PENDING, created_at__lt=now - window
    ).values_list("pk", "attempts"):
        if not any(
            Job.exists(f"notify-{message_id}-{n}", connection=queue.connection)
            for n in (attempts, attempts + 1)
        ):
            deliver_enqueue(message_id=message_id, attempt=attempts + 1)
            requeued += 1
    return {"reminded": reminded, "flushes": len(due_channels), "requeued": requeued}


def channel_test(*, channel: Channel, actor) -> Message:
    """The test button: one message, delivered at once through the same queue and retries."""
    message = Message.objects.create(
        channel=channel, kind=MessageKind.TEST, subject="[Reelflow] Test notification",
        body=f"A test from {actor.get_username()} for {channel.team}/{channel.name}. If you read this, "
             "alerts routed to this channel reach you.",
    )  # fmt: skip
    _deliver_on_commit(message.pk, attempt=1)
    return message


def _deliver_on_commit(message_id: int, *, attempt: int) -> None:
    def enqueue() -> None:
        try:
            deliver_enqueue(message_id=message_id, attempt=attempt)
        except (RedisError, OSError) as exc:
            logger.warning("notification %s not queued (the sweep will): %s", message_id, exc)

    transaction.on_commit(enqueue)


def deliver_enqueue(*, message_id: int, attempt: int) -> None:
    queue = django_rq.get_queue(settings.NOTIFICATIONS_QUEUE)
    delays = settings.NOTIFICATIONS_RETRY_SECONDS
    rq_id = f"notify-{message_id}-{attempt}"
    if attempt == 1:
        queue.enqueue("notifications.jobs.message_deliver", message_id, job_id=rq_id, result_ttl=0)
    else:
        delay = delays[min(attempt - 2, len(delays) - 1)]
        queue.enqueue_in(timedelta(seconds=delay), "notifications.jobs.message_deliver", message_id, job_id=rq_id,
                         result_ttl=0)  # fmt: skip


def message_deliver(*, message_id: int) -> Message | None:
    """One attempt: send, record it, then schedule the next attempt or give up."""
    message = (
        Message.objects.select_related("channel").filter(pk=message_id, state=MessageState.PENDING).first()
    )
    if message is None:
        return None
    channel = message.channel
    started = time.monotonic()
    error = ""
    try:
        transports.send(channel, message)
    except transports.DeliveryError as exc:
        error = str(exc)[:500]
    elapsed = time.monotonic() - started
    metrics.observe("reelflow_notification_delivery_seconds", elapsed, kind=channel.kind)
    metrics.inc("reelflow_notification_deliveries", kind=channel.kind, outcome="failed" if error else "sent")
    return _attempt_record(message_id=message_id, error=error, ms=round(elapsed * 1000))


@transaction.atomic
def _attempt_record(*, message_id: int, error: str, ms: int) -> Message:
    message = Message.objects.select_for_update().select_related("channel").get(pk=message_id)
    channel = Channel.objects.select_for_update().get(pk=message.channel_id)
    now = timezone.now()
    message.attempts += 1
    message.log = [*message.log, {"at": now.isoformat(), "ok": not error, "error": error, "ms": ms}]
    if not error:
        message.state, message.sent_at = MessageState.SENT, now
        message.save(update_fields=["attempts", "log", "state", "sent_at"])
        if channel.failing_since is not None:
            channel.failing_since, channel.last_error = None, ""
            channel.save(update_fields=["failing_since", "last_error"])
            _failing_alert_resolve(channel)
        return message
    logger.warning(
        "notification %s to %s failed (attempt %s): %s", message.pk, channel, message.attempts, error
    )
    channel.last_error = error
    channel.failing_since = channel.failing_since or now
    channel.save(update_fields=["last_error", "failing_since"])
    if message.attempts < settings.NOTIFICATIONS_MAX_ATTEMPTS:
        message.save(update_fields=["attempts", "log"])
        _deliver_on_commit(message.pk, attempt=message.attempts + 1)
        return message
    message.state = MessageState.FAILED
    message.save(update_fields=["attempts", "log", "state"])
    alert_raise(
        source=SOURCE,
        severity=AlertSeverity.CRITICAL,
        title=f"Notification channel {channel.team}/{channel.name} ({channel.kind}) is failing",
        detail=f"{message.attempts} attempts failed; last: {error}",
        subject=channel,
        dedup_key=f"notifications:channel:{channel.pk}:failing",
        evidence={"message": message.pk},
    )
    return message


def _failing_alert_resolve(channel: Channel) -> None:
    for alert in Alert.objects.filter(dedup_key=f"notifications:channel:{channel.pk}:failing").exclude(
        state=AlertState.RESOLVED
    ):
        alert_resolve(alert=alert)


# --- Channels and routes (the page's writes) ----------------------------------------------


@transaction.atomic
def channel_create(*, team: str, name: str, kind: str, target: str, secret: str = "", actor) -> Channel:
    channel = Channel.objects.create(team=team, name=name, kind=kind, target=target, secret=secret)
    event_record(type="notifications.channel_created", subject=channel, actor=actor,
                 payload={"team": team, "name": name, "kind": kind})  # fmt: skip
    return channel


@transaction.atomic
def channel_delete(*, channel: Channel, actor) -> None:
    event_record(type="notifications.channel_deleted", subject=channel, actor=actor,
                 payload={"team": channel.team, "name": channel.name})  # fmt: skip
    _failing_alert_resolve(channel)
    channel.delete()


@transaction.atomic
def route_create(*, team: str, sources: list[str], min_severity: str, actor) -> Route:
    route = Route.objects.create(team=team, sources=sorted(sources), min_severity=min_severity)
    event_record(type="notifications.route_created", subject=route, actor=actor,
                 payload={"team": team, "sources": route.sources, "min_severity": min_severity})  # fmt: skip
    return route


@transaction.atomic
def route_delete(*, route: Route, actor) -> None:
    event_record(type="notifications.route_deleted", subject=route, actor=actor, payload={"team": route.team})
    route.delete()
