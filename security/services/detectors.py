"""Detectors over access events. Each ends in an automatic response and an alert:

- failed logins for one account, or from one address, past a threshold -> login refused
  (account locked / address blocked);
- one signed-in user collecting 403/404s on many different paths (probing other publishers'
  asset ids) -> the user is suspended (is_active=False);
- an EC2 launch by a principal outside the allowlist -> the instance is stopped.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Max, Q
from django.utils import timezone

from core.models import AlertSeverity
from security.models import (
    AccessEvent,
    AccessEventKind,
    Instance,
    LoginBlock,
    LoginBlockScope,
    ResponseAction,
    ResponseKind,
    ResponseState,
)
from security.principals import Principal, principal_allowed
from security.services.alerts import security_alert_raise
from security.services.responses import response_as_alert_action, response_record

logger = logging.getLogger(__name__)


def login_block_active(*, key: str) -> LoginBlock | None:
    now = timezone.now()
    return (
        LoginBlock.objects.filter(key=key, lifted_at__isnull=True)
        .filter(Q(until__isnull=True) | Q(until__gt=now))
        .first()
    )


def _count_since(key: str, window_start):
    """Count from the later of the window's start and the last lift, so an unlocked account
    is not locked again by the very failures that locked it."""
    lifted = LoginBlock.objects.filter(key=key, lifted_at__isnull=False).aggregate(last=Max("lifted_at"))[
        "last"
    ]
    return max(window_start, lifted) if lifted else window_start


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


def login_failure_record(*, username: str, address: str | None) -> list[ResponseAction]:
    """One failed login. Past the per-account or per-address threshold, logins are refused."""
    now = timezone.now()
    window_start = now - timedelta(seconds=settings.SECURITY_LOGIN_WINDOW_SECONDS)
    username = (username or "")[:150]
    AccessEvent.objects.create(
        kind=AccessEventKind.LOGIN_FAILED, username=username, address=address, created_at=now
    )
    responses = []
    user_model = get_user_model()
    user = (
        user_model._default_manager.filter(**{user_model.USERNAME_FIELD: username}).first()
        if username
        else None
    )
    if user is not None:
        key = f"user:{user.pk}"
        failures = AccessEvent.objects.filter(
            kind=AccessEventKind.LOGIN_FAILED,
            username=username,
            created_at__gte=_count_since(key, window_start),
        )
        count = failures.count()
        if count >= settings.SECURITY_LOGIN_FAILURES_PER_USER and login_block_active(key=key) is None:
            block = _login_block(
                scope=LoginBlockScope.USER, key=key, user=user, reason=f"{count} failed logins", address=None
            )
            if block is not None:
                addresses = sorted({a for a in failures.values_list("address", flat=True) if a})
                responses.append(
                    _block_respond(
                        block=block,
                        kind=ResponseKind.LOCK_ACCOUNT,
                        target=("user", username),
                        title=f"Account {username} locked after {count} failed logins",
                        subject=user,
                        evidence={
                            "failures": count,
                            "window_seconds": settings.SECURITY_LOGIN_WINDOW_SECONDS,
                            "addresses": addresses[:50],
                        },
                    )
                )
    if address:
        key = f"address:{address}"
        failures = AccessEvent.objects.filter(
            kind=AccessEventKind.LOGIN_FAILED,
            address=address,
            created_at__gte=_count_since(key, window_start),
        )
        count = failures.count()
        if count >= settings.SECURITY_LOGIN_FAILURES_PER_ADDRESS and login_block_active(key=key) is None:
            block = _login_block(
                scope=LoginBlockScope.ADDRESS, key=key, address=address, reason=f"{count} failed logins"
            )
            if block is not None:
                names = sorted(set(failures.values_list("username", flat=True)))
                responses.append(
                    _block_respond(
                        block=block,
                        kind=ResponseKind.BLOCK_ADDRESS,
                        target=("address", address),
                        title=f"Logins from {address} blocked after {count} failed logins",
                        subject=("security.address", address),
                        evidence={
                            "failures": count,
                            "usernames": names[:50],
                            "window_seconds": settings.SECURITY_LOGIN_WINDOW_SECONDS,
                        },
                    )
                )
    return responses


def _block_respond(
    *, block: LoginBlock, kind: str, target: tuple[str, str], title: str, subject, evidence: dict
) -> ResponseAction:
    until = f"until {block.until:%Y-%m-%d %H:%M} UTC" if block.until else "until lifted"
    response = response_record(
        kind=kind,
        target_type=target[0],
        target_id=target[1],
        detail=f"logins refused {until}",
        undo={"op": "lift", "block_id": block.pk},
        undo_hint="Lift the block: logins are accepted again.",
    )
    alert = security_alert_raise(
        severity=AlertSeverity.CRITICAL,
        title=title,
        detail=block.reason,
        subject=subject,
        dedup_key=f"security:{block.key}",
        evidence=evidence,
        actions=[response_as_alert_action(response)],
    )
    response.alert = alert
    response.save(update_fields=["alert"])
    return response


def access_denied_record(*, user, path: str, status: int) -> ResponseAction | None:
    """A 403/404 answered to a signed-in user. Many distinct paths in the window is probing."""
    now = timezone.now()
    AccessEvent.objects.create(
        kind=AccessEventKind.ACCESS_DENIED,
        user=user,
        username=user.get_username(),
        path=path[:500],
        status=status,
        created_at=now,
    )
    window_start = now - timedelta(seconds=settings.SECURITY_PROBE_WINDOW_SECONDS)
    reactivated = ResponseAction.objects.filter(
        kind=ResponseKind.SUSPEND_USER, target_id=str(user.pk), undone_at__isnull=False
    ).aggregate(last=Max("undone_at"))["last"]
    since = max(window_start, reactivated) if reactivated else window_start
    denied = AccessEvent.objects.filter(kind=AccessEventKind.ACCESS_DENIED, user=user, created_at__gte=since)
    distinct = denied.values("path").distinct().count()
    if distinct < settings.SECURITY_PROBE_THRESHOLD or not user.is_active:
        return None
    sample = list(denied.order_by("-id").values_list("path", "status")[:20])
    evidence = {
        "distinct_paths": distinct,
        "window_seconds": settings.SECURITY_PROBE_WINDOW_SECONDS,
        "recent": sample,
    }
    title = f"{user.get_username()} probed {distinct} paths it may not see"
    with transaction.atomic():
        if user.is_superuser:
            # A superuser cannot be shut out by this detector; a person decides.
            security_alert_raise(
                severity=AlertSeverity.WARNING, title=title, subject=user,
                dedup_key=f"security:probe:{user.pk}", evidence=evidence,
            )  # fmt: skip
            return None
        user_model = get_user_model()
        if not user_model._default_manager.filter(pk=user.pk, is_active=True).update(is_active=False):
            return None  # suspended by a concurrent request
        user.is_active = False
        response = response_record(
            kind=ResponseKind.SUSPEND_USER,
            target_type="user",
            target_id=str(user.pk),
            detail=f"suspended {user.get_username()} (is_active=False): signed out everywhere",
            undo={"op": "reactivate", "user_id": user.pk},
            undo_hint="Reactivate the user.",
        )
        alert = security_alert_raise(
            severity=AlertSeverity.CRITICAL,
            title=title,
            detail="Many 403/404 answers on distinct paths: the pattern of guessing other publishers' ids.",
            subject=user,
            dedup_key=f"security:probe:{user.pk}",
            evidence=evidence,
            actions=[response_as_alert_action(response)],
        )
        response.alert = alert
        response.save(update_fields=["alert"])
    return response


def launch_principal_allowed(*, principal: Principal) -> bool | None:
    """True/False against SECURITY_LAUNCH_ALLOWLIST (ARNs matched part by part, see
    security.principals); None when no allowlist is set."""
    patterns = settings.SECURITY_LAUNCH_ALLOWLIST
    if not patterns:
        return None
    return principal_allowed(principal=principal, patterns=patterns)


def launch_event_distrust(
    *, event_id: str, region: str, principal: str, reasons: dict[str, str]
) -> None:
    """A RunInstances event that EC2 contradicts (an instance launched long before the event, by
    another account, unknown to EC2, or a session that is not its issuer's) is not acted on: it
    may be forged to get a running instance stopped. A person looks instead."""
    security_alert_raise(
        severity=AlertSeverity.CRITICAL,
        title=f"RunInstances event {event_id or '(no id)'} does not match EC2: not acted on",
        detail="; ".join(f"{target}: {why}" for target, why in reasons.items()),
        subject=("security.launch_event", event_id or "unknown"),
        dedup_key=f"security:launch-event:{event_id}" if event_id else "",
        evidence={"event_id": event_id, "region": region, "principal": principal, "reasons": reasons},
    )


def launch_respond(
    *, instance: Instance, principal: str, issuer: str, event_id: str, stop_error: str = ""
) -> ResponseAction:
    """Record the stop of an instance launched outside the allowlist (already sent, before the
    instance was even read, to answer fast) and raise its alert."""
    if stop_error:
        response = response_record(
            kind=ResponseKind.STOP, state=ResponseState.FAILED, target_type="ec2", target_id=instance.external_id,
            detail="stop failed", error=stop_error[:1000],
        )  # fmt: skip
    else:
        response = response_record(
            kind=ResponseKind.STOP, target_type="ec2", target_id=instance.external_id,
            detail=f"stopped {instance.external_id}: launched by {principal}, who is not on the allowlist",
            undo={"op": "start"}, undo_hint="Start the instance again (add the principal to the allowlist first).",
        )  # fmt: skip
    alert = security_alert_raise(
        severity=AlertSeverity.CRITICAL,
        title=f"Instance {instance.external_id} launched by unauthorized principal {principal}"[:200],
        detail="RunInstances by a principal that is not on SECURITY_LAUNCH_ALLOWLIST.",
        subject=instance,
        dedup_key=f"security:launch:{instance.external_id}",
        evidence={"principal": principal, "session_issuer": issuer, "event_id": event_id, "region": instance.region,
                  "allowlist": list(settings.SECURITY_LAUNCH_ALLOWLIST)},
        actions=[response_as_alert_action(response)],
    )  # fmt: skip
    response.alert = alert
    response.save(update_fields=["alert"])
    return response
