from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from core.models import Alert, AlertSeverity, AlertState, Event
from core.roles import Role
from core.services import alert_acknowledge, alert_raise, demo_users_ensure, event_record

pytestmark = pytest.mark.django_db


def test_event_record_names_subject_actor_and_owner(make_user):
    alice = make_user("alice")
    event = event_record(type="asset.created", subject=alice, actor=alice, owner=alice, payload={"x": 1})
    stored = Event.objects.get(pk=event.pk)
    assert (stored.subject_type, stored.subject_id) == ("auth.user", str(alice.pk))
    assert stored.actor_label == "alice" and stored.owner == alice and stored.payload == {"x": 1}


def test_event_record_without_person_is_labelled():
    event = event_record(type="sweep.done", subject=("pipeline.sweep", 1), actor_label="scheduler")
    assert event.actor is None and event.actor_label == "scheduler"


def test_same_open_alert_is_counted_not_duplicated():
    first = alert_raise(source="backups", severity=AlertSeverity.CRITICAL, title="copy corrupt", dedup_key="k1")
    again = alert_raise(source="backups", severity=AlertSeverity.CRITICAL, title="copy corrupt", dedup_key="k1")
    assert first.pk == again.pk
    assert Alert.objects.get(pk=first.pk).occurrences == 2
    assert Event.objects.filter(type="alert.raised").count() == 1


def test_resolved_alert_does_not_absorb_a_new_one():
    first = alert_raise(source="security", severity=AlertSeverity.WARNING, title="t", dedup_key="k2")
    Alert.objects.filter(pk=first.pk).update(state=AlertState.RESOLVED)
    second = alert_raise(source="security", severity=AlertSeverity.WARNING, title="t", dedup_key="k2")
    assert second.pk != first.pk


def test_acknowledge_needs_justification_and_future_expiry(make_user):
    reviewer = make_user("rev", role=Role.SECURITY)
    alert = alert_raise(source="security", severity=AlertSeverity.WARNING, title="ssh open")
    with pytest.raises(ValueError, match="justification"):
        alert_acknowledge(alert=alert, reviewer=reviewer, justification="  ")
    with pytest.raises(ValueError, match="future"):
        alert_acknowledge(alert=alert, reviewer=reviewer, justification="ok", expires_at=timezone.now())
    expires = timezone.now() + timedelta(days=7)
    alert_acknowledge(alert=alert, reviewer=reviewer, justification="bastion host", expires_at=expires)
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED and alert.acknowledged_by == reviewer
    assert Event.objects.filter(type="alert.acknowledged", actor=reviewer).exists()


def test_demo_users_get_one_role_each_and_can_be_reset():
    demo_users_ensure(password="first-password-1")
    demo_users_ensure(password="second-password-2")
    from django.contrib.auth import get_user_model

    users = get_user_model().objects.in_bulk(["publisher", "operations", "security"], field_name="username")
    assert users["publisher"].check_password("second-password-2")
    assert list(users["publisher"].groups.values_list("name", flat=True)) == [Role.PUBLISHER.value]
    assert users["operations"].has_perm("core.access_operations")
    assert not users["operations"].has_perm("core.access_studio")
    assert Group.objects.filter(name__in=[r.value for r in Role]).count() == 3
