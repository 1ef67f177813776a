"""Every write to core's models goes through here."""

import secrets
from collections.abc import Callable
from datetime import datetime

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.utils import timezone

from core.models import Alert, AlertSeverity, AlertState, Event
from core.roles import PERMISSIONS, ROLE_PERMISSIONS, VERIFIED_PUBLISHERS_GROUP, Role


def _subject_ref(subject: models.Model | tuple[str, str | int]) -> tuple[str, str]:
    if isinstance(subject, models.Model):
        return subject._meta.label_lower, str(subject.pk)
    subject_type, subject_id = subject
    return subject_type, str(subject_id)


# Functions called with every recorded event, inside the transaction that records it (e.g. the
# webhooks app creates its deliveries there). Apps register in AppConfig.ready, so core imports
# none of them.
_event_sinks: list[Callable[[Event], None]] = []


def event_sink_register(sink: Callable[[Event], None]) -> None:
    if sink not in _event_sinks:
        _event_sinks.append(sink)


# Functions called with (alert, change) for every alert raised ("raised"), raised again while
# open ("repeated") or resolved ("resolved"), inside the transaction that changed it: the
# notifications app routes every alert source through here (registered in its AppConfig.ready).
_alert_sinks: list[Callable[[Alert, str], None]] = []


def alert_sink_register(sink: Callable[[Alert, str], None]) -> None:
    if sink not in _alert_sinks:
        _alert_sinks.append(sink)


def _alert_changed(alert: Alert, change: str) -> None:
    for sink in _alert_sinks:
        sink(alert, change)


def event_record(
    *,
    type: str,  # noqa: A002 - the event's type is its natural name
    subject: models.Model | tuple[str, str | int],
    actor=None,
    actor_label: str = "system",
    owner=None,
    payload: dict | None = None,
) -> Event:
    """Append one event to the log. Call inside the transaction that made it true."""
    subject_type, subject_id = _subject_ref(subject)
    if actor is not None and getattr(actor, "is_authenticated", False):
        actor_label = actor.get_username()
    else:
        actor = None
    # One transaction with what the sinks write (no savepoint: a failing sink fails the caller's).
    with transaction.atomic(savepoint=False):
        event = Event.objects.create(
            type=type,
            subject_type=subject_type,
            subject_id=subject_id,
            actor=actor,
            actor_label=actor_label,
            owner=owner,
            payload=payload or {},
        )
        for sink in _event_sinks:
            sink(event)
    return event


@transaction.atomic
def alert_raise(
    *,
    source: str,
    severity: AlertSeverity,
    title: str,
    detail: str = "",
    subject: models.Model | tuple[str, str | int] | None = None,
    dedup_key: str = "",
    evidence: dict | None = None,
    actions: list[dict] | None = None,
) -> Alert:
    """Raise an alert, or count one more occurrence of the same open alert (by dedup_key)."""
    subject_type, subject_id = _subject_ref(subject) if subject is not None else ("", "")
    now = timezone.now()
    if dedup_key:
        existing = (
            Alert.objects.select_for_update()
            .filter(dedup_key=dedup_key)
            .exclude(state=AlertState.RESOLVED)
            .first()
        )
        if existing is not None:
            existing.occurrences += 1
            existing.last_seen_at = now
            existing.detail = detail or existing.detail
            if evidence:
                existing.evidence = evidence
            if actions:
                existing.actions = [*existing.actions, *actions]
            existing.save(update_fields=["occurrences", "last_seen_at", "detail", "evidence", "actions"])
            _alert_changed(existing, "repeated")
            return existing
    alert = Alert.objects.create(
        source=source,
        severity=severity,
        title=title,
        detail=detail,
        subject_type=subject_type,
        subject_id=subject_id,
        dedup_key=dedup_key,
        evidence=evidence or {},
        actions=actions or [],
        created_at=now,
        last_seen_at=now,
    )
    event_record(
        type="alert.raised",
        subject=alert,
        payload={"source": source, "severity": severity, "title": title},
    )
    _alert_changed(alert, "raised")
    return alert


@transaction.atomic
def alert_acknowledge(
    *, alert: Alert, reviewer, justification: str, expires_at: datetime | None = None
) -> Alert:
    if not justification.strip():
        raise ValueError("An acknowledgement needs a justification.")
    if expires_at is not None and expires_at <= timezone.now():
        raise ValueError("The acknowledgement must expire in the future.")
    alert.state = AlertState.ACKNOWLEDGED
    alert.acknowledged_by = reviewer
    alert.acknowledged_at = timezone.now()
    alert.justification = justification.strip()
    alert.expires_at = expires_at
    alert.save(
        update_fields=["state", "acknowledged_by", "acknowledged_at", "justification", "expires_at"]
    )
    event_record(
        type="alert.acknowledged",
        subject=alert,
        actor=reviewer,
        payload={"justification": alert.justification, "expires_at": expires_at and expires_at.isoformat()},
    )
    return alert


@transaction.atomic
def alert_resolve(*, alert: Alert, actor=None) -> Alert:
    alert.state = AlertState.RESOLVED
    alert.resolved_at = timezone.now()
    alert.save(update_fields=["state", "resolved_at"])
    event_record(type="alert.resolved", subject=alert, actor=actor)
    _alert_changed(alert, "resolved")
    return alert


def roles_sync() -> None:
    """Create the role groups and give each its permissions (idempotent; runs after migrate)."""
    content_type = ContentType.objects.get_for_model(Event)
    perms = {}
    for codename, name in PERMISSIONS.items():
        perms[codename], _ = Permission.objects.get_or_create(
            codename=codename, content_type=content_type, defaults={"name": name}
        )
    for role in Role:
        group, _ = Group.objects.get_or_create(name=role.value)
        group.permissions.add(*(perms[c] for c in ROLE_PERMISSIONS[role]))
    Group.objects.get_or_create(name=VERIFIED_PUBLISHERS_GROUP)


DEMO_USERS = {"publisher": Role.PUBLISHER, "operations": Role.OPERATIONS, "security": Role.SECURITY}


@transaction.atomic
def demo_users_ensure(*, password: str) -> list[str]:
    """Create (or reset the password of) the three demo users, one per role."""
    roles_sync()
    user_model = get_user_model()
    names = []
    for username, role in DEMO_USERS.items():
        user, _ = user_model.objects.get_or_create(username=username, defaults={"email": f"{username}@example.com"})
        user.set_password(password)
        user.is_active = True
        user.save()
        user.groups.add(Group.objects.get(name=role.value))
        names.append(username)
    return names


def user_create_with_role(*, username: str, role: Role, password: str | None = None, **extra):
    """Create a user in one role; returns (user, password)."""
    roles_sync()
    password = password or secrets.token_urlsafe(12)
    user = get_user_model().objects.create_user(username=username, password=password, **extra)
    user.groups.add(Group.objects.get(name=role.value))
    return user, password
