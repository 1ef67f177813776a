"""Reads shaped for the security pages, the exports and the live socket."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from core.models import Alert, AlertState, Event
from security.models import Instance, InstanceState, ResponseAction, Violation, ViolationState

AGE_CHOICES = {
    "": "any age",
    "1h": "opened in the last hour",
    "24h": "opened in the last day",
    "7d": "opened in the last week",
    "gt7d": "older than a week",
    "gt30d": "older than 30 days",
}
_AGES = {"1h": timedelta(hours=1), "24h": timedelta(days=1), "7d": timedelta(days=7),
         "gt7d": timedelta(days=7), "gt30d": timedelta(days=30)}  # fmt: skip
STATE_ACTIVE = "active"  # open or acknowledged: the default view


def client_address(request) -> str | None:
    """The peer address. Behind a proxy this is the proxy's; Reelflow trusts no forwarded header."""
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


@dataclass
class ViolationFilters:
    severity: str = ""
    policy: str = ""
    resource: str = ""
    state: str = STATE_ACTIVE
    age: str = ""
    kind: str = ""
    assignee: str = ""

    @classmethod
    def from_query(cls, params) -> ViolationFilters:
        found = cls(**{k: params.get(k, getattr(cls, k)).strip() for k in cls.__dataclass_fields__})
        if found.age not in AGE_CHOICES:
            found.age = ""
        return found


def violations_list(*, filters: ViolationFilters) -> QuerySet[Violation]:
    qs = Violation.objects.select_related("instance", "assignee", "acknowledged_by")
    if filters.state == STATE_ACTIVE:
        qs = qs.exclude(state=ViolationState.RESOLVED)
    elif filters.state in ViolationState.values:
        qs = qs.filter(state=filters.state)
    if filters.severity:
        qs = qs.filter(severity=filters.severity)
    if filters.policy:
        qs = qs.filter(policy=filters.policy)
    if filters.kind:
        qs = qs.filter(instance__kind=filters.kind)
    if filters.resource:
        qs = qs.filter(
            Q(instance__external_id__icontains=filters.resource)
            | Q(instance__name__icontains=filters.resource)
        )
    if filters.assignee == "me":
        pass  # resolved by the view, which knows who "me" is
    elif filters.assignee == "none":
        qs = qs.filter(assignee__isnull=True)
    elif filters.assignee:
        qs = qs.filter(assignee__username=filters.assignee)
    if filters.age:
        edge = timezone.now() - _AGES[filters.age]
        qs = qs.filter(opened_at__lt=edge) if filters.age.startswith("gt") else qs.filter(opened_at__gte=edge)
    return qs.order_by("-last_seen_at", "-id")


def violation_policies() -> list[str]:
    return list(Violation.objects.order_by("policy").values_list("policy", flat=True).distinct())


def violation_detail(*, pk: int) -> Violation:
    return Violation.objects.select_related(
        "instance", "assignee", "acknowledged_by", "resolved_by", "alert"
    ).get(pk=pk)


def violation_audit(*, violation: Violation) -> QuerySet[Event]:
    return (
        Event.objects.filter(subject_type="security.violation", subject_id=str(violation.pk))
        .select_related("actor")
        .order_by("id")
    )


def violation_responses(*, violation: Violation) -> QuerySet[ResponseAction]:
    return violation.responses.select_related("undone_by").order_by("id")


def reviewers() -> QuerySet:
    perm = Permission.objects.filter(codename="access_security", content_type__app_label="core").first()
    users = get_user_model().objects.filter(is_active=True)
    if perm is None:
        return users.filter(is_superuser=True)
    return (
        users.filter(Q(groups__permissions=perm) | Q(user_permissions=perm) | Q(is_superuser=True))
        .distinct()
        .order_by("username")
    )


def violation_counts() -> dict:
    rows = (
        Violation.objects.exclude(state=ViolationState.RESOLVED)
        .values("state", "severity")
        .annotate(n=Count("id"))
    )
    counts = {"open": 0, "acknowledged": 0, "critical": 0}
    for row in rows:
        counts[row["state"]] += row["n"]
        if row["severity"] == "critical" and row["state"] == ViolationState.OPEN:
            counts["critical"] += row["n"]
    return counts


def security_alerts(*, limit: int = 50, include_resolved: bool = False) -> QuerySet[Alert]:
    qs = Alert.objects.filter(source="security").select_related("acknowledged_by")
    if not include_resolved:
        qs = qs.exclude(state=AlertState.RESOLVED)
    return qs.order_by("-last_seen_at", "-id")[:limit]


def alert_detail(*, pk: int) -> Alert:
    return Alert.objects.select_related("acknowledged_by").get(pk=pk, source="security")


def alert_responses(*, alert: Alert) -> QuerySet[ResponseAction]:
    return ResponseAction.objects.filter(alert=alert).select_related("undone_by").order_by("id")


def alert_violation(*, alert: Alert) -> Violation | None:
    if alert.subject_type != "security.violation":
        return None
    return Violation.objects.filter(pk=alert.subject_id).select_related("instance").first()


def alerts_snapshot(*, limit: int = 20) -> list[dict]:
    from security.services.alerts import alert_payload

    return [alert_payload(a) for a in security_alerts(limit=limit)]


def inventory_list(*, kind: str = "", include_gone: bool = False) -> QuerySet[Instance]:
    qs = Instance.objects.annotate(
        active_violations=Count("violations", filter=~Q(violations__state=ViolationState.RESOLVED))
    )
    if kind:
        qs = qs.filter(kind=kind)
    if not include_gone:
        qs = qs.exclude(state__in=[InstanceState.TERMINATED, InstanceState.STOPPED])
    return qs.order_by("kind", "external_id")


def violation_export_row(violation: Violation) -> dict:
    now = timezone.now()
    return {
        "id": violation.pk,
        "policy": violation.policy,
        "severity": violation.severity,
        "state": violation.state,
        "resource_kind": violation.instance.kind,
        "resource_id": violation.instance.external_id,
        "resource_name": violation.instance.name,
        "region": violation.instance.region,
        "opened_at": violation.opened_at.isoformat(),
        "last_seen_at": violation.last_seen_at.isoformat(),
        "age_hours": round((now - violation.opened_at).total_seconds() / 3600, 1),
        "assignee": violation.assignee.get_username() if violation.assignee else "",
        "acknowledged_by": violation.acknowledged_by.get_username() if violation.acknowledged_by else "",
        "justification": violation.justification,
        "expires_at": violation.expires_at.isoformat() if violation.expires_at else "",
        "compliant": violation.evidence.get("compliant", ""),
        "checks": [
            {"key": c.get("key"), "op": c.get("op"), "value": c.get("value"), "actual": c.get("actual")}
            for c in violation.evidence.get("checks", []) if c.get("offending")
        ],
    }  # fmt: skip
