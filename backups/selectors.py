"""Reads for the backups pages, exports and progress snapshots; each shaped for its page so
templates never walk into per-row queries."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Count, Max, Min, Prefetch, Q, QuerySet, Sum
from django.utils import timezone

from backups.models import (
    BackupPolicy,
    BackupRun,
    CopyTask,
    Failure,
    ObjectVersion,
    PolicySource,
    Restore,
    RestoreDrill,
    RestoreItem,
    RunState,
    TaskState,
    VersionState,
)
from backups.services.runs import COUNTERS

WITH_COPY = (VersionState.PROTECTED, VersionState.DAMAGED)


def policies_overview(*, now: datetime | None = None) -> list[BackupPolicy]:
    """Policies with their sources, coverage figures and last/active run (a fixed number of queries)."""
    now = now or timezone.now()
    policies = list(
        BackupPolicy.objects.select_related("destination_endpoint").prefetch_related(
            Prefetch("sources", queryset=PolicySource.objects.select_related("endpoint").order_by("pk"))
        )
    )
    coverage = {
        row["source__policy"]: row
        for row in ObjectVersion.objects.filter(state__in=[*WITH_COPY, VersionState.LOST])
        .values("source__policy")
        .annotate(
            objects=Count("pk", filter=Q(is_current=True, state=VersionState.PROTECTED)),
            bytes=Sum("size", filter=Q(is_current=True, state=VersionState.PROTECTED)),
            retained=Count("pk", filter=Q(is_current=False, state__in=WITH_COPY)),
            damaged=Count("pk", filter=Q(state=VersionState.DAMAGED)),
            lost=Count("pk", filter=Q(state=VersionState.LOST)),
            never_verified=Count("pk", filter=Q(state__in=WITH_COPY, verified_at__isnull=True)),
            oldest_verified=Min("verified_at", filter=Q(state__in=WITH_COPY)),
        )
    }
    pending = dict(
        ObjectVersion.objects.filter(state=VersionState.PENDING, is_current=True)
        .values("source__policy")
        .annotate(n=Count("pk"))
        .values_list("source__policy", "n")
    )
    last_ids = (
        BackupRun.objects.values("policy").annotate(last=Max("pk")).values_list("last", flat=True)
    )
    last_runs = {r.policy_id: r for r in BackupRun.objects.filter(pk__in=list(last_ids))}
    drill_ids = RestoreDrill.objects.values("policy").annotate(last=Max("pk")).values_list("last", flat=True)
    last_drills = {d.policy_id: d for d in RestoreDrill.objects.filter(pk__in=list(drill_ids))}
    for policy in policies:
        policy.last_drill = last_drills.get(policy.pk)
        row = coverage.get(policy.pk, {})
        policy.objects_protected = row.get("objects", 0)
        policy.bytes_protected = row.get("bytes") or 0
        policy.versions_retained = row.get("retained", 0)
        policy.versions_damaged = row.get("damaged", 0)
        policy.versions_lost = row.get("lost", 0)
        policy.never_verified = row.get("never_verified", 0)
        oldest = row.get("oldest_verified")
        policy.oldest_verified_at = oldest
        policy.oldest_verified_age = (now - oldest) if oldest else None
        policy.verify_overdue = bool(oldest and (now - oldest).days >= policy.verify_within_days)
        policy.objects_pending = pending.get(policy.pk, 0)
        policy.last_run = last_runs.get(policy.pk)
        policy.next_due_at = (
            policy.last_run.created_at + timedelta(minutes=policy.interval_minutes) if policy.last_run else now
        )
    return policies


def runs_list(*, policy_id: int | None = None, state: str | None = None) -> QuerySet[BackupRun]:
    qs = BackupRun.objects.select_related("policy", "requested_by").order_by("-pk")
    if policy_id:
        qs = qs.filter(policy_id=policy_id)
    if state:
        qs = qs.filter(state=state)
    return qs


def runs_trend(*, policy_id: int | None = None, limit: int = 30) -> list[BackupRun]:
    """Finished runs, oldest first, for the trend charts."""
    qs = BackupRun.objects.filter(finished_at__isnull=False).select_related("policy").order_by("-pk")
    if policy_id:
        qs = qs.filter(policy_id=policy_id)
    return list(reversed(qs[:limit]))


def run_detail(*, pk: int) -> BackupRun | None:
    return BackupRun.objects.select_related("policy__destination_endpoint", "requested_by").filter(pk=pk).first()


def run_failures(*, run: BackupRun) -> QuerySet[Failure]:
    return Failure.objects.filter(run=run).select_related("version", "task", "repair_task", "alert").order_by("pk")


def run_tasks_summary(*, run: BackupRun) -> dict[str, int]:
    counts = dict(CopyTask.objects.filter(run=run).values_list("state").annotate(n=Count("pk")))
    return {state: counts.get(state, 0) for state in TaskState.values}


def run_failed_tasks(*, run: BackupRun, limit: int = 100) -> QuerySet[CopyTask]:
    return (
        CopyTask.objects.filter(run=run, state=TaskState.FAILED).select_related("version").order_by("pk")[:limit]
    )


def failure_detail(*, pk: int) -> Failure | None:
    return Failure.objects.select_related("run__policy", "version").filter(pk=pk).first()


def restores_recent(*, limit: int = 10) -> QuerySet[Restore]:
    return Restore.objects.select_related("policy", "requested_by", "target_endpoint").order_by("-pk")[:limit]


def restore_detail(*, pk: int) -> Restore | None:
    return Restore.objects.select_related("policy", "requested_by", "target_endpoint").filter(pk=pk).first()


def restore_items(*, restore: Restore) -> QuerySet[RestoreItem]:
    return RestoreItem.objects.filter(restore=restore).select_related("version").order_by("pk")


def policy_choices() -> QuerySet[BackupPolicy]:
    return BackupPolicy.objects.order_by("name")


def progress_snapshot(*, kind: str, pk: int) -> dict | None:
    """What a live page shows; the same dict is pushed over the websocket."""
    if kind == "run":
        run = BackupRun.objects.filter(pk=pk).first()
        if run is None:
            return None
        tasks = run_tasks_summary(run=run)
        total = sum(tasks.values())
        finished = tasks[TaskState.DONE] + tasks[TaskState.FAILED] + tasks[TaskState.SKIPPED]
        return {
            "kind": "run", "id": run.pk, "state": run.state, "state_label": run.get_state_display(),
            "phase": run.phase, "phase_label": run.get_phase_display(), "active": run.is_active,
            **{name: getattr(run, name) for name in COUNTERS},
            "tasks_total": total, "tasks_finished": finished,
            "percent": round(100 * finished / total, 1) if total else (100.0 if not run.is_active else 0.0),
            "duration_seconds": round(run.duration_seconds, 1),
            "throughput": round(run.throughput_bytes_per_second),
        }
    if kind == "restore":
        restore = Restore.objects.filter(pk=pk).first()
        if restore is None:
            return None
        finished = restore.objects_done + restore.objects_failed
        return {
            "kind": "restore", "id": restore.pk, "state": restore.state, "state_label": restore.get_state_display(),
            "active": restore.finished_at is None, "objects_total": restore.objects_total,
            "objects_done": restore.objects_done, "objects_failed": restore.objects_failed,
            "bytes_restored": restore.bytes_restored,
            "percent": round(100 * finished / restore.objects_total, 1) if restore.objects_total else 100.0,
        }
    return None


EXPORT_FIELDS = (
    "id", "policy", "trigger", "state", "phase", "created_at", "finished_at", "duration_seconds",
    *COUNTERS, "scan_seconds", "copy_seconds", "verify_seconds", "throughput_bytes_per_second", "error",
)


def run_export_row(run: BackupRun) -> dict:
    row = {}
    for name in EXPORT_FIELDS:
        value = run.policy.name if name == "policy" else getattr(run, name)
        if isinstance(value, datetime):
            value = value.isoformat()
        elif isinstance(value, float):
            value = round(value, 3)
        row[name] = value
    return row


def failure_export_row(failure: Failure) -> dict:
    return {
        "id": failure.pk, "run": failure.run_id, "key": failure.key, "check": failure.failed_check, "cause": failure.cause,
        "resolution": failure.resolution, "detail": failure.detail, "action": failure.action,
        "created_at": failure.created_at.isoformat(), "resolved_at": failure.resolved_at and failure.resolved_at.isoformat(),
        "chain": failure.chain, "references": failure.references,
    }


def run_states() -> list[tuple[str, str]]:
    return list(RunState.choices)


def policy_detail(*, pk: int) -> BackupPolicy | None:
    return BackupPolicy.objects.select_related("destination_endpoint").filter(pk=pk).first()


def hold_target(*, policy: BackupPolicy, key: str) -> ObjectVersion | None:
    """The version whose copy a legal hold on `key` covers: the current one, else the newest
    with a copy (a deleted object)."""
    versions = ObjectVersion.objects.filter(source__policy=policy, key=key, tampered_at__isnull=True).exclude(backup_key="")
    return versions.select_related("source__policy").order_by("-is_current", "-first_seen_at", "-pk").first()


def legal_holds(*, policy: BackupPolicy, limit: int = 100) -> list[ObjectVersion]:
    return list(ObjectVersion.objects.filter(source__policy=policy, legal_hold=True).order_by("key", "-pk")[:limit])
