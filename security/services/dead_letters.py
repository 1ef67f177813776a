"""Event messages that cannot be handled: recorded with why, alerted, never retried forever."""

from __future__ import annotations

from django.db import transaction

from core.models import AlertSeverity
from security.models import DeadLetter
from security.services.alerts import security_alert_raise

MAX_BODY = 256 * 1024  # SQS's own limit on a message


@transaction.atomic
def dead_letter_record(
    *, source: str, message_id: str, body: str, error: str, receive_count: int = 1
) -> DeadLetter:
    letter = DeadLetter.objects.create(
        source=source, message_id=message_id[:128], body=body[:MAX_BODY], error=error[:2000],
        receive_count=receive_count,
    )  # fmt: skip
    # One alert per source, counted again per message: a flood of bad messages is one row.
    letter.alert = security_alert_raise(
        severity=AlertSeverity.WARNING,
        title=f"EC2 event messages from {source} could not be handled",
        detail=f"Message {message_id or '(no id)'}: {error[:500]}. Kept as dead letter #{letter.pk}.",
        subject=("security.deadletter", letter.pk),
        dedup_key=f"security:dead-letter:{source}",
        evidence={"dead_letter": letter.pk, "message_id": message_id, "error": error[:2000],
                  "receive_count": receive_count},
    )  # fmt: skip
    letter.save(update_fields=["alert"])
    return letter
