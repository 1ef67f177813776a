"""Security's alerts are core alerts (source "security"), pushed live to the security pages."""

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import models, transaction
from redis.exceptions import RedisError

from core.models import Alert, AlertSeverity
from core.services import alert_raise

logger = logging.getLogger(__name__)

ALERTS_GROUP = "security.alerts"


def alert_payload(alert: Alert) -> dict:
    return {
        "id": alert.pk,
        "severity": alert.severity,
        "title": alert.title,
        "state": alert.state,
        "occurrences": alert.occurrences,
        "last_seen_at": alert.last_seen_at.isoformat(),
        "actions": len(alert.actions),
    }


def _publish_rollback_unsafe(alert_id: int) -> None:
    alert = Alert.objects.filter(pk=alert_id).first()
    if alert is None:
        return
    try:
        async_to_sync(get_channel_layer().group_send)(
            ALERTS_GROUP, {"type": "alert.raised", "alert": alert_payload(alert)}
        )
    except (RedisError, OSError) as exc:
        # The live page misses one row; the alert itself is committed and listed on reload.
        logger.warning("could not push alert %s live: %s", alert_id, exc)


def security_alert_raise(
    *,
    severity: AlertSeverity,
    title: str,
    detail: str = "",
    subject: models.Model | tuple[str, str | int] | None = None,
    dedup_key: str = "",
    evidence: dict | None = None,
    actions: list[dict] | None = None,
) -> Alert:
    """Raise (or count again) a security alert; pushed to open security pages after commit."""
    alert = alert_raise(
        source="security",
        severity=severity,
        title=title[:200],
        detail=detail,
        subject=subject,
        dedup_key=dedup_key,
        evidence=evidence,
        actions=actions,
    )
    transaction.on_commit(lambda: _publish_rollback_unsafe(alert.pk))
    return alert
