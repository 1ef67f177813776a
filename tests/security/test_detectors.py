"""Unauthorized access: brute-force logins lock the account from that address (or that browser)
and slow the address down; a signed-in user probing many ids it may not see is suspended. Both
alert and can be undone; a locked reviewer has ways in."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import F
from django.test import Client
from django.urls import reverse

from core.models import Alert
from core.roles import Role
from security.models import (
    AccessEvent,
    AccessEventKind,
    LoginBlock,
    ResponseAction,
    ResponseKind,
    ResponseState,
)
from security.services.logins import DEVICE_COOKIE, device_cookie_issue
from security.services.responses import response_undo

pytestmark = pytest.mark.django_db


def login(client, username, password, address="198.51.100.7"):
    return client.post(reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address)


def test_brute_force_locks_the_account_from_that_address_and_undo_unlocks(
    client, make_user, reviewer, settings
):
    settings.SECURITY_LOGIN_FAILURES_PER_USER = 5
    settings.SECURITY_LOGIN_SLOWDOWN_AFTER = 50
    make_user("pat", role=Role.PUBLISHER)
    for _ in range(5):
        assert login(client, "pat", "guess").status_code == 200
    # Locked from that address: even the right password is refused unchecked, and says why.
    answer = login(client, "pat", "pw")
    assert answer.status_code == 200 and b"locked from your address" in answer.content
    # From anywhere else the account is not locked: an attacker cannot shut its owner out.
    assert login(Client(), "pat", "pw", address="192.0.2.10").status_code == 302
    alert = Alert.objects.get(title__startswith="Account pat locked")
    assert alert.severity == "critical" and alert.evidence["failures"] == 5
    assert alert.evidence["addresses"] == ["198.51.100.7"] and alert.evidence["scope"] == "account+address"
    response = ResponseAction.objects.get(kind=ResponseKind.LOCK_ACCOUNT)
    assert alert.actions[0]["response_id"] == response.pk
    refused = AccessEvent.objects.filter(kind=AccessEventKind.LOGIN_FAILED).count()
    assert refused == 5, "a refused attempt is not counted as another failure"

    response_undo(response=response, actor=reviewer)
    assert login(client, "pat", "pw").status_code == 302
    assert LoginBlock.objects.get().lifted_by == reviewer
    # The failures that caused the lock do not lock it again.
    client.logout()
    assert login(client, "pat", "guess").status_code == 200
    assert LoginBlock.objects.filter(lifted_at__isnull=True).count() == 0


def test_failures_from_one_address_slow_it_down_without_locking_anyone(client, make_user, settings):
    settings.SECURITY_LOGIN_SLOWDOWN_AFTER = 3
    settings.SECURITY_LOGIN_FAILURES_PER_ADDRESS = 4
    make_user("victim", role=Role.PUBLISHER)
    spray = "203.0.113.66"
    for index in range(3):
        login(client, f"user{index}", "guess", address=spray)
    answer = login(client, "victim", "pw", address=spray)
    assert answer.status_code == 200 and b"try again in 1 s" in answer.content
    assert login(Client(), "victim", "pw", address="203.0.113.1").status_code == 302  # elsewhere fine

    def later(seconds):
        AccessEvent.objects.update(created_at=F("created_at") - timedelta(seconds=seconds))

    later(1.5)
    assert login(client, "user3", "guess", address=spray).status_code == 200  # checked: the 4th failure
    assert b"try again in 2 s" in login(client, "victim", "pw", address=spray).content
    alert = Alert.objects.get(dedup_key=f"security:address:{spray}")
    assert (
        sorted(alert.evidence["usernames"]) == [f"user{i}" for i in range(4)] and "slowed down" in alert.title
    )
    later(2.5)
    assert login(client, "victim", "pw", address=spray).status_code == 302, "slowed down, never locked out"
    assert not LoginBlock.objects.exists()


def test_a_locked_reviewer_gets_in_from_a_browser_that_signed_in_before(make_user, settings):
    settings.SECURITY_LOGIN_FAILURES_PER_USER = 3
    settings.SECURITY_LOGIN_SLOWDOWN_AFTER = 50
    make_user("rita", role=Role.SECURITY)
    office = "198.51.100.20"  # the reviewer and the attacker share the office's NAT address
    laptop = Client()
    assert login(laptop, "rita", "pw", address=office).status_code == 302
    assert laptop.cookies[DEVICE_COOKIE].value
    laptop.post(reverse("logout"))  # not Client.logout(): that forgets every cookie
    attacker = Client()
    for _ in range(3):
        login(attacker, "rita", "guess", address=office)
    assert b"locked from your address" in login(attacker, "rita", "pw", address=office).content
    assert b"locked from your address" in login(Client(), "rita", "pw", address=office).content
    assert login(laptop, "rita", "pw", address=office).status_code == 302, "the known browser gets in"
    laptop.post(reverse("logout"))  # not Client.logout(): that forgets every cookie
    # A stolen-looking cookie of another account is no cookie at all.
    thief = Client()
    thief.cookies[DEVICE_COOKIE] = device_cookie_issue(username="someone-else")
    assert b"locked from your address" in login(thief, "rita", "pw", address=office).content
    # Guessing on the known browser locks that browser only.
    for _ in range(3):
        login(laptop, "rita", "guess", address=office)
    assert b"locked on this browser" in login(laptop, "rita", "pw", address=office).content
    device_alert = Alert.objects.get(title__contains="on one of its browsers")
    assert device_alert.evidence["scope"] == "device"
    assert login(Client(), "rita", "pw", address="192.0.2.44").status_code == 302


def test_security_unlock_lifts_every_lock_of_the_account(make_user, settings, capsys):
    settings.SECURITY_LOGIN_FAILURES_PER_USER = 2
    settings.SECURITY_LOGIN_SLOWDOWN_AFTER = 50
    make_user("rita", role=Role.SECURITY)
    for address in ("198.51.100.1", "198.51.100.2"):
        for _ in range(2):
            login(Client(), "rita", "guess", address=address)
    assert LoginBlock.objects.filter(lifted_at__isnull=True).count() == 2
    call_command("security_unlock", "rita")
    assert "2 lock(s) lifted" in capsys.readouterr().out
    assert login(Client(), "rita", "pw", address="198.51.100.1").status_code == 302
    assert set(ResponseAction.objects.values_list("state", flat=True)) == {ResponseState.UNDONE}
    with pytest.raises(CommandError, match="no account named 'nobody'"):
        call_command("security_unlock", "nobody")


def test_publisher_probing_other_assets_is_suspended(client, make_user, reviewer, settings):
    settings.SECURITY_PROBE_THRESHOLD = 8
    probe = make_user("prober", role=Role.PUBLISHER)
    client.force_login(probe)
    for asset_id in range(1, 8):
        assert client.get(f"/studio/assets/{asset_id}000/").status_code in (403, 404)
    assert get_user_model().objects.get(pk=probe.pk).is_active
    client.get("/studio/assets/8000/")  # the eighth id of the same route
    assert not get_user_model().objects.get(pk=probe.pk).is_active
    # Suspension signs the user out everywhere: the next request is anonymous.
    assert client.get(reverse("studio:home")).status_code == 302
    alert = Alert.objects.get(dedup_key=f"security:probe:{probe.pk}")
    assert alert.evidence["distinct_paths"] == 8 and len(alert.actions) == 1
    assert alert.evidence["route"] == "/studio/assets/<id>/"

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


def test_a_reviewer_mapping_the_app_is_not_suspended(client, make_user, settings):
    settings.SECURITY_PROBE_THRESHOLD = 20
    mapper = make_user("mapper", role=Role.PUBLISHER)
    client.force_login(mapper)
    pages = ["/security/", "/console/", "/backups/", "/webhooks/", "/admin/", "/django-rq/"]
    pages += [f"/no/such/page-{n}/" for n in range(30)]
    for path in pages:
        assert client.get(path).status_code in (302, 403, 404), path
    assert get_user_model().objects.get(pk=mapper.pk).is_active
    assert not Alert.objects.exists()


@pytest.mark.parametrize(
    ("path", "route"),
    [
        ("/studio/assets/123/", "/studio/assets/<id>/"),
        ("/security/violations/7/acknowledge/", "/security/violations/<id>/acknowledge/"),
        ("/x/0b5e2b7c-7d1f-4c7e-9a1e-3f2b1c0d9e8f/", "/x/<id>/"),
        ("/security/inventory/i-0123456789abcdef0/", "/security/inventory/<id>/"),
        ("/console/jobs/", None),
        ("/static/app-v2.css", None),
    ],
)
def test_probe_routes(path, route):
    from security.services.detectors import probe_route

    assert probe_route(path) == route
