from django.db.models import Count, Q

from core.models import Alert, AlertState
from notifications.models import Channel, Message, Route


def channels_overview() -> list[Channel]:
    """Channels with their message counts and the alert each failing one raised (3 queries)."""
    channels = list(
        Channel.objects.annotate(
            sent=Count("messages", filter=Q(messages__state="sent")),
            failed=Count("messages", filter=Q(messages__state="failed")),
        )
    )
    failing = {
        a.subject_id: a
        for a in Alert.objects.filter(source="notifications", subject_type="notifications.channel").exclude(
            state=AlertState.RESOLVED
        )
    }
    for channel in channels:
        channel.failing_alert = failing.get(str(channel.pk))
    return channels


def routes() -> list[Route]:
    return list(Route.objects.all())


def messages_recent(*, limit: int = 50) -> list[Message]:
    return list(Message.objects.select_related("channel")[:limit])
