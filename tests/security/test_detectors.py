"""Unauthorized access: brute-force logins lock the account (or block the address); a signed-in
user probing many paths it may not see is suspended. Both alert and can be undone."""

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from core.models import Alert
from core.roles import Role
from security.models import LoginBlock, ResponseAction, ResponseKind, ResponseState
from security.services.responses import response_undo

pytestmark = pytest.mark.django_db


def login(client, username, password, address="198.51.100.7"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


def test_brute_force_locks_the_account_and_undo_unlocks(client, make_user, reviewer, settings):
    settings.SECURITY_LOGIN_FAILURES_PER_USER = 5
    make_user("pat", role=Role.PUBLISHER)
    for _ in range(5):
        assert login(client, "pat", "guess").status_code == 200
    # Locked: even the right password is refused, with the same message as a wrong one.
    answer = login(client, "pat", "pw")
    assert answer.status_code == 200 and b"match" in answer.content
    alert = Alert.objects.get(title__startswith="Account pat locked")
    assert alert.severity == "critical" and alert.evidence["failures"] == 5
    assert alert.evidence["addresses"] == ["198.51.100.7"]
    response = ResponseAction.objects.get(kind=ResponseKind.LOCK_ACCOUNT)
    assert alert.actions[0]["response_id"] == response.pk

    response_undo(response=response, actor=reviewer)
    assert login(client, "pat", "pw").status_code == 302
    assert LoginBlock.objects.get().lifted_by == reviewer
    # The failures that caused the lock do not lock it again.
    client.logout()
    assert login(client, "pat", "guess").status_code == 200
    assert LoginBlock.objects.filter(lifted_at__isnull=True).count() == 0


def test_failures_from_one_address_block_it_for_every_account(client, make_user, settings):
    settings.SECURITY_LOGIN_FAILURES_PER_ADDRESS = 6
    make_user("victim", role=Role.PUBLISHER)
    for index in range(6):
        login(client, f"user{index}", "guess", address="203.0.113.66")
    assert login(client, "victim", "pw", address="203.0.113.66").status_code == 200  # refused
    assert login(client, "victim", "pw", address="203.0.113.1").status_code == 302  # elsewhere fine
    alert = Alert.objects.get(dedup_key="security:address:203.0.113.66")
    assert sorted(alert.evidence["usernames"]) == [f"user{i}" for i in range(6)]


def test_publisher_probing_other_assets_is_suspended(client, make_user, reviewer, settings):
    settings.SECURITY_PROBE_THRESHOLD = 8
    probe = make_user("prober", role=Role.PUBLISHER)
    client.force_login(probe)
    for asset_id in range(1, 8):
        assert client.get(f"/studio/assets/{asset_id}000/").status_code in (403, 404)
    assert get_user_model().objects.get(pk=probe.pk).is_active
    client.get("/security/")  # a 403: the eighth distinct denied path
    assert not get_user_model().objects.get(pk=probe.pk).is_active
    # Suspension signs the user out everywhere: the next request is anonymous.
    assert client.get(reverse("studio:home")).status_code == 302
    alert = Alert.objects.get(dedup_key=f"security:probe:{probe.pk}")
    assert alert.evidence["distinct_paths"] == 8 and len(alert.actions) == 1

    response = ResponseAction.objects.get(kind=ResponseKind.SUSPEND_USER)
    response_undo(response=response, actor=reviewer)
    assert get_user_model().objects.get(pk=probe.pk).is_active
    assert ResponseAction.objects.get(pk=response.pk).state == ResponseState.UNDONE
    # Reactivated: the old denials do not count again.
    client.force_login(get_user_model().objects.get(pk=probe.pk))
    client.get("/studio/assets/999999/")
    assert get_user_model().objects.get(pk=probe.pk).is_active


def test_anonymous_and_few_denials_are_not_counted(client, make_user):
    from security.models import AccessEvent

    client.get("/studio/assets/1/")
    assert not AccessEvent.objects.exists()
    client.force_login(make_user("ok", role=Role.PUBLISHER))
    client.get("/no/such/page/")
    assert AccessEvent.objects.count() == 1 and not Alert.objects.exists()
