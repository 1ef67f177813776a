"""A violation's life: opened by an evaluation, acknowledged (with a justification and an
expiry), assigned, resolved; reopened when the acknowledgement expires or the configuration it
covered changes. Every step is an event on the violation (its audit trail) in core's log."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from core.models import AlertState
from core.services import alert_acknowledge, alert_resolve, event_record
from security.models import Instance, Violation, ViolationState

MAX_ACKNOWLEDGEMENT = timedelta(days=365)


class ViolationError(ValueError):
    """A request the violation's state or the input does not allow; the message says why."""


class Transition:
    OPENED = "opened"
    REOPENED = "reopened"
    STILL_OPEN = "still-open"
    STILL_ACKNOWLEDGED = "still-acknowledged"


def _event(violation: Violation, type_: str, *, actor=None, actor_label: str = "system", **payload) -> None:
    event_record(
        type=f"violation.{type_}", subject=violation, actor=actor, actor_label=actor_label, payload=payload
    )


def _alert_close(violation: Violation, actor=None) -> None:
    if violation.alert_id and violation.alert.state != AlertState.RESOLVED:
        alert_resolve(alert=violation.alert, actor=actor)


def _reopen(violation: Violation, *, reason: str, now: datetime) -> None:
    """Back to open. Its old alert is closed; the caller raises a fresh one."""
    _alert_close(violation)
    violation.state = ViolationState.OPEN
    violation.opened_at = now
    violation.resolved_at = None
    violation.resolved_by = None
    violation.resolution = ""
    violation.acknowledged_by = None
    violation.acknowledged_at = None
    violation.justification = ""
    violation.expires_at = None
    violation.ack_config_digest = ""
    violation.alert = None
    violation.save(
        update_fields=[
            "state", "opened_at", "resolved_at", "resolved_by", "resolution", "acknowledged_by",
            "acknowledged_at", "justification", "expires_at", "ack_config_digest", "alert",
        ]
    )  # fmt: skip
    _event(violation, "reopened", actor_label="evaluation", reason=reason)


def violation_observe(
    *, instance: Instance, policy, existing: Violation | None, evidence: dict, now: datetime
) -> tuple[Violation, str]:
    """The policy fired on the instance: open, reopen or refresh its violation. Call in a transaction."""
    if existing is None:
        violation = Violation.objects.create(
            instance=instance,
            policy=policy.name,
            severity=policy.severity,
            description=policy.description,
            evidence=evidence,
            config_digest=instance.config_digest,
            opened_at=now,
            last_seen_at=now,
        )
        _event(violation, "opened", actor_label="evaluation", severity=policy.severity)
        return violation, Transition.OPENED
    violation = existing
    transition = Transition.STILL_OPEN
    if violation.state == ViolationState.RESOLVED:
        _reopen(violation, reason="the rule fires again", now=now)
        transition = Transition.REOPENED
    elif violation.state == ViolationState.ACKNOWLEDGED:
        if violation.expires_at is not None and violation.expires_at <= now:
            _reopen(violation, reason="the acknowledgement expired", now=now)
            transition = Transition.REOPENED
        elif violation.ack_config_digest and violation.ack_config_digest != instance.config_digest:
            _reopen(violation, reason="the configuration changed since it was acknowledged", now=now)
            transition = Transition.REOPENED
        else:
            transition = Transition.STILL_ACKNOWLEDGED
    violation.severity = policy.severity
    violation.description = policy.description
    violation.evidence = evidence
    violation.config_digest = instance.config_digest
    violation.last_seen_at = now
    violation.save(update_fields=["severity", "description", "evidence", "config_digest", "last_seen_at"])
    return violation, transition


def violation_close(
    *,
    violation: Violation,
    reason: str,
    actor=None,
    actor_label: str = "evaluation",
    close_alert: bool = True,
) -> Violation:
    """Resolved because the rule no longer fires (or its instance is gone). An instance that
    went away (often because we stopped it) leaves its alert open for a reviewer."""
    if violation.state == ViolationState.RESOLVED:
        return violation
    violation.state = ViolationState.RESOLVED
    violation.resolved_at = timezone.now()
    violation.resolved_by = actor
    violation.resolution = reason
    violation.save(update_fields=["state", "resolved_at", "resolved_by", "resolution"])
    if close_alert:
        _alert_close(violation, actor=actor)
    _event(violation, "resolved", actor=actor, actor_label=actor_label, reason=reason)
    return violation


@transaction.atomic
def violations_close_for_instance(*, instance: Instance, reason: str) -> int:
    active = (
        Violation.objects.select_for_update().filter(instance=instance).exclude(state=ViolationState.RESOLVED)
    )
    count = 0
    for violation in active:
        violation_close(violation=violation, reason=reason, close_alert=False)
        count += 1
    return count


@transaction.atomic
def violation_acknowledge(
    *, violation: Violation, reviewer, justification: str, expires_at: datetime
) -> Violation:
    """Accept the risk for a while. Covers this configuration only: a change reopens it."""
    justification = acknowledgement_check(justification=justification, expires_at=expires_at)
    now = timezone.now()
    violation = Violation.objects.select_for_update(of=("self",)).select_related("instance", "alert").get(pk=violation.pk)
    if violation.state == ViolationState.RESOLVED:
        raise ViolationError("A resolved violation cannot be acknowledged.")
    violation.state = ViolationState.ACKNOWLEDGED
    violation.acknowledged_by = reviewer
    violation.acknowledged_at = now
    violation.justification = justification
    violation.expires_at = expires_at
    violation.ack_config_digest = violation.instance.config_digest
    violation.save(
        update_fields=[
            "state",
            "acknowledged_by",
            "acknowledged_at",
            "justification",
            "expires_at",
            "ack_config_digest",
        ]
    )
    if violation.alert_id and violation.alert.state != AlertState.RESOLVED:
        alert_acknowledge(
            alert=violation.alert, reviewer=reviewer, justification=justification, expires_at=expires_at
        )
    _event(
        violation,
        "acknowledged",
        actor=reviewer,
        justification=justification,
        expires_at=expires_at.isoformat(),
    )
    return violation


@transaction.atomic
def violation_accept_after_undo(
    *, violation: Violation, reviewer, justification: str, expires_at: datetime, undone: str
) -> Violation:
    """Undoing an automatic response accepts the violation for a while: otherwise the next
    evaluation would respond again. Covers the configuration as restored, from any state."""
    violation = Violation.objects.select_for_update(of=("self",)).select_related("instance", "alert").get(pk=violation.pk)
    now = timezone.now()
    violation.state = ViolationState.ACKNOWLEDGED
    violation.acknowledged_by = reviewer
    violation.acknowledged_at = now
    violation.justification = justification
    violation.expires_at = expires_at
    violation.ack_config_digest = violation.instance.config_digest
    violation.resolved_at = None
    violation.resolution = ""
    violation.save(
        update_fields=["state", "acknowledged_by", "acknowledged_at", "justification", "expires_at",
                       "ack_config_digest", "resolved_at", "resolution"]
    )  # fmt: skip
    if violation.alert_id and violation.alert.state != AlertState.RESOLVED:
        alert_acknowledge(
            alert=violation.alert, reviewer=reviewer, justification=justification, expires_at=expires_at
        )
    _event(
        violation,
        "acknowledged",
        actor=reviewer,
        justification=justification,
        expires_at=expires_at.isoformat(),
        undone=undone,
    )
    return violation


def acknowledgement_check(*, justification: str, expires_at: datetime | None) -> str:
    justification = (justification or "").strip()
    now = timezone.now()
    if not justification:
        raise ViolationError("An acknowledgement needs a justification.")
    if expires_at is None or expires_at <= now:
        raise ViolationError("An acknowledgement needs an expiry in the future.")
    if expires_at - now > MAX_ACKNOWLEDGEMENT:
        raise ViolationError("An acknowledgement may last a year at most.")
    return justification


@transaction.atomic
def violation_assign(*, violation: Violation, assignee, actor) -> Violation:
    violation = Violation.objects.select_for_update().get(pk=violation.pk)
    if assignee is not None and not assignee.has_perm("core.access_security"):
        raise ViolationError("Violations can only be assigned to security reviewers.")
    violation.assignee = assignee
    violation.save(update_fields=["assignee"])
    _event(violation, "assigned", actor=actor, assignee=assignee.get_username() if assignee else None)
    return violation


@transaction.atomic
def violation_resolve(*, violation: Violation, actor, note: str) -> Violation:
    """Resolved by a reviewer (fixed by hand). If the rule still fires, the next evaluation reopens it."""
    note = note.strip()
    if not note:
        raise ViolationError("Say how it was resolved.")
    violation = Violation.objects.select_for_update(of=("self",)).select_related("alert").get(pk=violation.pk)
    if violation.state == ViolationState.RESOLVED:
        raise ViolationError("The violation is already resolved.")
    return violation_close(violation=violation, reason=note, actor=actor, actor_label=actor.get_username())


def violations_expire(*, now: datetime | None = None) -> list[int]:
    """Reopen every acknowledgement past its expiry (and raise its alert again)."""
    from security.services.evaluation import violation_alert_raise

    now = now or timezone.now()
    reopened = []
    due = Violation.objects.filter(state=ViolationState.ACKNOWLEDGED, expires_at__lte=now).values_list(
        "pk", flat=True
    )
    for pk in list(due):
        with transaction.atomic():
            violation = Violation.objects.select_for_update(of=("self",)).select_related("instance", "alert").get(pk=pk)
            if violation.state != ViolationState.ACKNOWLEDGED or violation.expires_at > now:
                continue  # acknowledged again meanwhile
            _reopen(violation, reason="the acknowledgement expired", now=now)
            violation_alert_raise(violation=violation, responses=[], reason="acknowledgement expired")
        reopened.append(pk)
    return reopened
