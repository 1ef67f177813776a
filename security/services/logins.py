"""Failed logins, without handing attackers a denial of service.

- **Lock by account and address.** Five failures for one account from one address lock that
  account *from that address* for an hour (alert, undoable). Someone guessing from elsewhere
  cannot shut a reviewer out; guessing from a thousand addresses gets five tries each, and the
  per-address slow-down below.
- **Slow down by address.** Past SECURITY_LOGIN_SLOWDOWN_AFTER failures from an address (any
  accounts), each next attempt from it waits 1, 2, 4, ... s (at most
  SECURITY_LOGIN_SLOWDOWN_MAX_SECONDS) after its last failure; earlier attempts are refused
  unchecked, with a message saying how long. Nobody is locked out; guessing becomes slow. At
  SECURITY_LOGIN_FAILURES_PER_ADDRESS failures a critical alert is raised.
- **A way in for a locked reviewer.** A browser that has signed in to the account before holds
  a signed device cookie (OWASP's "device cookies"): its attempts are counted for that device
  only, so neither the account+address lock nor the address slow-down applies to it, and five
  failures lock just that cookie. Otherwise: another network, a reviewer lifting the lock from
  the alert, or `manage.py security_unlock USERNAME`.
"""

from __future__ import annotations

import math
import secrets
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from core.models import AlertSeverity
from security.models import (
    AccessEvent,
    AccessEventKind,
    LoginBlock,
    LoginBlockScope,
    ResponseAction,
    ResponseKind,
    ResponseState,
)
from security.services.alerts import security_alert_raise
from security.services.responses import response_as_alert_action, response_record

DEVICE_COOKIE = "reelflow_device"
_DEVICE_SALT = "security.device"


def login_block_active(*, key: str) -> LoginBlock | None:
    now = timezone.now()
    return (
        LoginBlock.objects.filter(key=key, lifted_at__isnull=True)
        .filter(Q(until__isnull=True) | Q(until__gt=now))
        .first()
    )


def account_key(*, user_pk: int, address: str | None) -> str:
    return f"user:{user_pk}@{address or '-'}"


def device_key(device: str) -> str:
    return f"device:{device}"


# --- devices ---------------------------------------------------------------------------------------


def device_cookie_issue(*, username: str) -> str:
    """The cookie value a browser gets when it signs in: this account, a random device id."""
    return signing.dumps({"u": username, "d": secrets.token_hex(16)}, salt=_DEVICE_SALT)


def device_trusted(*, cookie: str | None, username: str) -> str:
    """The device id of a valid cookie issued for this account, or ""."""
    if not cookie:
        return ""
    try:
        data = signing.loads(cookie, salt=_DEVICE_SALT, max_age=settings.SECURITY_DEVICE_COOKIE_DAYS * 86400)
    except signing.BadSignature:
        return ""
    if not isinstance(data, dict) or data.get("u") != username or not isinstance(data.get("d"), str):
        return ""
    return data["d"]


# --- refusing --------------------------------------------------------------------------------------


def _since(key: str, window_start):
    """Count from the later of the window's start and the last lift, so an unlocked account
    is not locked again by the very failures that locked it."""
    lifted = LoginBlock.objects.filter(key=key, lifted_at__isnull=False).aggregate(last=Max("lifted_at"))[
        "last"
    ]
    return max(window_start, lifted) if lifted else window_start


def _window_start():
    return timezone.now() - timedelta(seconds=settings.SECURITY_LOGIN_WINDOW_SECONDS)


def _untrusted_failures():
    return AccessEvent.objects.filter(kind=AccessEventKind.LOGIN_FAILED, device="")


def address_wait_seconds(*, address: str | None) -> int:
    """How long an attempt from this address must still wait (0: it may try now)."""
    after = settings.SECURITY_LOGIN_SLOWDOWN_AFTER
    if not address or after <= 0:
        return 0
    failures = _untrusted_failures().filter(address=address, created_at__gte=_window_start())
    summary = failures.aggregate(last=Max("created_at"))
    count = failures.count()
    if count < after:
        return 0
    delay = min(2 ** (count - after), settings.SECURITY_LOGIN_SLOWDOWN_MAX_SECONDS)
    remaining = delay - (timezone.now() - summary["last"]).total_seconds()
    return math.ceil(remaining) if remaining > 0 else 0


def login_refusal(*, username: str, address: str | None, device: str) -> str:
    """Why this attempt is refused before its password is even checked, or "" to check it."""
    if device:
        block = login_block_active(key=device_key(device))
        return _locked_message(block, "on this browser") if block else ""
    wait = address_wait_seconds(address=address)
    if wait:
        return f"Too many failed logins from your address: try again in {wait} s."
    user = get_user_model()._default_manager.filter(**{get_user_model().USERNAME_FIELD: username}).first()
    if user is None:
        return ""
    block = login_block_active(key=account_key(user_pk=user.pk, address=address))
    return _locked_message(block, "from your address") if block else ""


def _locked_message(block: LoginBlock, where: str) -> str:
    until = f"after {block.until:%H:%M} UTC" if block.until else "once a security reviewer lifts the lock"
    return (
        f"This account is locked {where} after too many failed logins: try again {until}, "
        "from a browser that has signed in to it before, or ask a security reviewer to lift the lock."
    )


# --- counting --------------------------------------------------------------------------------------


def _login_block(
    *, scope: str, key: str, reason: str, user=None, address: str | None = None
) -> LoginBlock | None:
    now = timezone.now()
    seconds = settings.SECURITY_LOGIN_LOCK_SECONDS
    # An expired block still holds the key's one active slot until it is marked lifted.
    LoginBlock.objects.filter(key=key, lifted_at__isnull=True, until__lte=now).update(lifted_at=now)
    try:
        with transaction.atomic():
            return LoginBlock.objects.create(
                scope=scope, key=key, user=user, address=address, reason=reason,
                until=now + timedelta(seconds=seconds) if seconds else None,
            )  # fmt: skip
    except IntegrityError:
        return None  # another request crossed the threshold at the same moment and blocked it


def login_failure_record(*, username: str, address: str | None, device: str = "") -> list[ResponseAction]:
    """One failed login (its password was checked). Past the thresholds: a lock of the account
    from that address (or of that device), and an alert about the address."""
    username = (username or "")[:150]
    AccessEvent.objects.create(
        kind=AccessEventKind.LOGIN_FAILED, username=username, address=address, device=device[:64]
    )
    user_model = get_user_model()
    user = (
        user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
        if username
        else None
    )
    responses = []
    if user is not None:
        key = device_key(device) if device else account_key(user_pk=user.pk, address=address)
        failures = AccessEvent.objects.filter(
            kind=AccessEventKind.LOGIN_FAILED, username=username, created_at__gte=_since(key, _window_start())
        )
        failures = failures.filter(device=device) if device else failures.filter(device="", address=address)
        count = failures.count()
        if count >= settings.SECURITY_LOGIN_FAILURES_PER_USER and login_block_active(key=key) is None:
            where = "on one of its browsers" if device else f"from {address or 'an unknown address'}"
            block = _login_block(
                scope=LoginBlockScope.USER, key=key, user=user, address=address,
                reason=f"{count} failed logins {where}",
            )  # fmt: skip
            if block is not None:
                responses.append(_lock_respond(block=block, user=user, count=count, where=where))
    if address and not device:
        _address_alert(address=address)
    return responses


def _lock_respond(*, block: LoginBlock, user, count: int, where: str) -> ResponseAction:
    until = f"until {block.until:%Y-%m-%d %H:%M} UTC" if block.until else "until lifted"
    username = user.get_username()
    response = response_record(
        kind=ResponseKind.LOCK_ACCOUNT,
        target_type="user",
        target_id=username,
        detail=f"logins to {username} {where} refused {until}",
        undo={"op": "lift", "block_id": block.pk},
        undo_hint="Lift the lock: logins are accepted again.",
    )
    alert = security_alert_raise(
        severity=AlertSeverity.CRITICAL,
        title=f"Account {username} locked after {count} failed logins {where}",
        detail=block.reason,
        subject=user,
        dedup_key=f"security:{block.key}",
        evidence={
            "failures": count,
            "window_seconds": settings.SECURITY_LOGIN_WINDOW_SECONDS,
            "addresses": [block.address] if block.address else [],
            "scope": "device" if block.key.startswith("device:") else "account+address",
        },
        actions=[response_as_alert_action(response)],
    )
    response.alert = alert
    response.save(update_fields=["alert"])
    return response


def _address_alert(*, address: str) -> None:
    failures = _untrusted_failures().filter(address=address, created_at__gte=_window_start())
    count = failures.count()
    if count != settings.SECURITY_LOGIN_FAILURES_PER_ADDRESS:
        return  # once, when the threshold is crossed (the slow-down itself needs no alert)
    names = sorted(set(failures.values_list("username", flat=True)))
    security_alert_raise(
        severity=AlertSeverity.CRITICAL,
        title=f"{count} failed logins from {address}: it is slowed down",
        detail=(
            f"Each further attempt from {address} waits up to "
            f"{settings.SECURITY_LOGIN_SLOWDOWN_MAX_SECONDS} s; accounts are locked from it after "
            f"{settings.SECURITY_LOGIN_FAILURES_PER_USER} failures each."
        ),
        subject=("security.address", address),
        dedup_key=f"security:address:{address}",
        evidence={
            "failures": count,
            "usernames": names[:50],
            "window_seconds": settings.SECURITY_LOGIN_WINDOW_SECONDS,
        },
    )


def account_unlock(*, username: str, actor_label: str) -> int:
    """Lift every active lock of an account (all addresses and devices); how many were lifted.
    The way in when every reviewer is locked: `manage.py security_unlock USERNAME`."""
    from core.services import event_record

    user = get_user_model()._default_manager.get(**{get_user_model().USERNAME_FIELD: username})
    now = timezone.now()
    blocks = set(LoginBlock.objects.filter(user=user, lifted_at__isnull=True).values_list("pk", flat=True))
    LoginBlock.objects.filter(pk__in=blocks).update(lifted_at=now)
    for response in ResponseAction.objects.filter(
        kind=ResponseKind.LOCK_ACCOUNT, state=ResponseState.DONE, target_id=username
    ):
        if response.undo.get("block_id") in blocks:
            ResponseAction.objects.filter(pk=response.pk).update(state=ResponseState.UNDONE, undone_at=now)
    lifted = len(blocks)
    event_record(
        type="security.account_unlocked", subject=user, actor_label=actor_label, payload={"lifted": lifted}
    )
    return lifted
