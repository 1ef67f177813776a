"""Acknowledging and resolving security alerts from the alert page. An alert about a violation
is acknowledged through the violation (so it reopens with it); any other goes to core directly."""

from datetime import datetime

from django.db import transaction

from core.models import Alert, AlertState
from core.services import alert_acknowledge, alert_resolve
from security.models import Violation
from security.services.violations import violation_acknowledge, violation_resolve


def _violation_of(alert: Alert) -> Violation | None:
    if alert.subject_type != "security.violation":
        return None
    return Violation.objects.filter(pk=alert.subject_id, alert=alert).first()


@transaction.atomic
def security_alert_acknowledge(*, alert: Alert, reviewer, justification: str, expires_at: datetime) -> Alert:
    violation = _violation_of(alert)
    if violation is not None:
        violation_acknowledge(
            violation=violation, reviewer=reviewer, justification=justification, expires_at=expires_at
        )
        alert.refresh_from_db()
        return alert
    if alert.state == AlertState.RESOLVED:
        raise ValueError("A resolved alert cannot be acknowledged.")
    return alert_acknowledge(
        alert=alert, reviewer=reviewer, justification=justification, expires_at=expires_at
    )


@transaction.atomic
def security_alert_resolve(*, alert: Alert, actor) -> Alert:
    violation = _violation_of(alert)
    if violation is not None:
        violation_resolve(violation=violation, actor=actor, note=f"resolved from alert #{alert.pk}")
        alert.refresh_from_db()
        return alert
    return alert_resolve(alert=alert, actor=actor)
