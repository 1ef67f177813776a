"""Detectors over access events. Each ends in an automatic response and an alert:

- one signed-in user collecting 403/404s on many different ids of one route (probing other
  publishers' asset ids) -> the user is suspended (is_active=False); denials on paths without
  an id (a reviewer finding out what the app has) are not probing;
- an EC2 launch by a principal outside the allowlist -> the instance is stopped; a launch event
  EC2 contradicts -> an alert, nothing stopped.

Failed logins are security.services.logins'.
"""

from __future__ import annotations

import logging
import re
from collections import defaultdict
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.models import AlertSeverity
from security.models import (
    AccessEvent,
    AccessEventKind,
    Instance,
    ResponseAction,
    ResponseKind,
    ResponseState,
)
from security.principals import Principal, principal_allowed
from security.services.alerts import security_alert_raise
from security.services.responses import response_as_alert_action, response_record

logger = logging.getLogger(__name__)


# A path segment that names one object: a number, a UUID, a long hex id, an EC2 id.
_ID_SEGMENT = re.compile(
    r"\d+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{16,}|[a-z]+-[0-9a-f]{8,17}",
    re.IGNORECASE,
)
_PROBE_SCAN = 2000  # denials looked at per check: more than any threshold worth setting


def probe_route(path: str) -> str | None:
    """The route of a path with its ids replaced (`/studio/assets/<id>/`), or None if it has none."""
    segments = path.split("/")
    route = ["<id>" if _ID_SEGMENT.fullmatch(s) else s for s in segments]
    return "/".join(route) if route != segments else None


def access_denied_record(*, user, path: str, status: int) -> ResponseAction | None:
    """A 403/404 answered to a signed-in user. Many ids of one route in the window is probing."""
    now = timezone.now()
    AccessEvent.objects.create(
        kind=AccessEventKind.ACCESS_DENIED,
        user=user,
        username=user.get_username(),
        path=path[:500],
        status=status,
        created_at=now,
    )
    if probe_route(path) is None:
        return None  # no id in the path: not a guess at someone else's object
    window_start = now - timedelta(seconds=settings.SECURITY_PROBE_WINDOW_SECONDS)
    reactivated = ResponseAction.objects.filter(
        kind=ResponseKind.SUSPEND_USER, target_id=str(user.pk), undone_at__isnull=False
    ).aggregate(last=Max("undone_at"))["last"]
    since = max(window_start, reactivated) if reactivated else window_start
    denied = AccessEvent.objects.filter(kind=AccessEventKind.ACCESS_DENIED, user=user, created_at__gte=since)
    by_route: dict[str, set[str]] = defaultdict(set)
    for denied_path in denied.order_by("-id").values_list("path", flat=True)[:_PROBE_SCAN]:
        route = probe_route(denied_path)
        if route is not None:
            by_route[route].add(denied_path)
    route, paths = max(by_route.items(), key=lambda item: len(item[1]))
    distinct = len(paths)
    if distinct < settings.SECURITY_PROBE_THRESHOLD or not user.is_active:
        return None
    evidence = {
        "distinct_paths": distinct,
        "route": route,
        "window_seconds": settings.SECURITY_PROBE_WINDOW_SECONDS,
        "recent": sorted(paths)[:20],
    }
    title = f"{user.get_username()} probed {distinct} ids of {route} it may not see"
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
