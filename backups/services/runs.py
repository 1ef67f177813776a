"""Runs: start one (at most one unfinished per policy), drive it through its phases, resume it.

A run's phase and counters live in the database. Whoever drives a run owns it ("host:pid")
and heartbeats; a run whose owner died (SIGKILL, lost machine) is taken over by the next
`run_execute` for it (the command run again, or the scheduler's tick), which continues from
the phase and scan cursor where it stopped.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from backups import progress, storage
from backups.models import (
    BackupPolicy,
    BackupRun,
    Encryption,
    Failure,
    FailureCause,
    FailureCheck,
    Resolution,
    RunPhase,
    RunState,
    RunTrigger,
    RunVerify,
    ScanRequest,
)
from backups.services import keys
from backups.services.common import ALERT_SOURCE, alert_for, owner_alive, process_label
from core.models import Alert, AlertSeverity, AlertState
from core.services import alert_resolve, event_record

logger = logging.getLogger(__name__)

COUNTERS = (
    "objects_scanned", "bytes_scanned", "objects_new", "objects_changed", "objects_deleted", "objects_copied",
    "bytes_copied", "objects_deduplicated", "objects_verified", "bytes_verified", "objects_failed",
    "objects_repaired", "versions_pruned",
)


class RunAlreadyActive(Exception):
    def __init__(self, run: BackupRun) -> None:
        super().__init__(f"run #{run.pk} of {run.policy.name} is still {run.get_phase_display().lower()}")
        self.run = run


def _enqueue_on_commit(run_id: int) -> None:
    def enqueue() -> None:
        from backups import jobs

        jobs.run_enqueue(run_id)

    transaction.on_commit(enqueue)


def run_start(
    *, policy: BackupPolicy, trigger: str, verify: str = RunVerify.PLAN, scope: list[dict] | None = None,
    actor=None, enqueue: bool = False,
) -> BackupRun:
    """A new run, or RunAlreadyActive. With `enqueue`, a worker picks it up after commit."""
    try:
        with transaction.atomic():
            active = BackupRun.objects.filter(policy=policy, finished_at__isnull=True).select_related("policy").first()
            if active is not None:
                raise RunAlreadyActive(active)
            run = BackupRun.objects.create(
                policy=policy, trigger=trigger, verify=verify, scope=scope or [],
                requested_by=actor if getattr(actor, "is_authenticated", False) else None,
            )
            event_record(
                type="backup.run.started", subject=run, actor=actor, actor_label=trigger,
                payload={"policy": policy.name, "trigger": trigger, "scope": scope or []},
            )
            if enqueue:
                _enqueue_on_commit(run.pk)
    except IntegrityError:
        # Another process started one between our check and our insert.
        raise RunAlreadyActive(
            BackupRun.objects.select_related("policy").get(policy=policy, finished_at__isnull=True)
        ) from None
    return run


@transaction.atomic
def run_take(*, run_id: int, owner: str) -> BackupRun | None:
    """Become the run's driver; None if it is finished or a live process drives it."""
    run = BackupRun.objects.select_for_update().select_related("policy").get(pk=run_id)
    if run.finished_at is not None:
        return None
    if run.owner and run.owner != owner and owner_alive(run.owner, run.heartbeat_at):
        return None
    previous = run.owner
    run.owner, run.heartbeat_at = owner, timezone.now()
    run.save(update_fields=["owner", "heartbeat_at"])
    if previous and previous != owner:
        event_record(type="backup.run.resumed", subject=run, actor_label=owner, payload={"from": previous, "phase": run.phase})
    return run


def run_release(*, run_id: int, owner: str) -> None:
    from backups.services.copying import tasks_release

    run = BackupRun.objects.get(pk=run_id)
    tasks_release(run=run, owner=owner)
    BackupRun.objects.filter(pk=run_id, owner=owner).update(owner="")


def _phase(run: BackupRun, phase: str, publisher: progress.Publisher) -> None:
    run.phase = phase
    BackupRun.objects.filter(pk=run.pk).update(phase=phase, heartbeat_at=timezone.now())
    publisher.maybe(force=True)


@transaction.atomic
def run_finish(*, run_id: int, error: str = "") -> BackupRun:
    run = BackupRun.objects.select_for_update().select_related("policy").get(pk=run_id)
    if run.finished_at is not None:
        return run
    unresolved = Failure.objects.filter(run=run).exclude(resolution=Resolution.REPAIRED).exists()
    run.state = RunState.FAILED if error else (RunState.PARTIAL if unresolved else RunState.SUCCEEDED)
    run.phase = RunPhase.DONE
    run.error = error[:2000]
    run.finished_at = timezone.now()
    run.owner = ""
    run.save(update_fields=["state", "phase", "error", "finished_at", "owner"])
    event_record(
        type="backup.run.finished", subject=run, actor_label="backups",
        payload={"policy": run.policy.name, "state": run.state, **{c: getattr(run, c) for c in COUNTERS}},
    )
    if run.state == RunState.SUCCEEDED:
        run_alerts_resolve(run=run)
    transaction.on_commit(lambda: progress.Publisher("run", run.pk).maybe(force=True))
    return run


# Alerts about the policy's runs as a whole (the store refused a run, transfers or permissions
# failed): a later run of the same policy that succeeds proves them over. Alerts about one
# object's bytes (no good copy, a corrupted source, a write-once overwrite) stay for a person.
RUN_ALERT_DEDUPS = ("run:", "permission", "transfer")


def run_alerts_resolve(*, run: BackupRun) -> list[int]:
    """Resolve the policy's open run-level alerts after `run` succeeded, with an event naming
    the run that proved them over."""
    prefix = f"backups:{run.policy.name}:"
    dedups = Q()
    for name in RUN_ALERT_DEDUPS:
        dedups |= Q(dedup_key__startswith=prefix + name)
    resolved = []
    for alert in Alert.objects.select_for_update().filter(dedups, source=ALERT_SOURCE).exclude(state=AlertState.RESOLVED):
        alert_resolve(alert=alert)
        resolved.append(alert.pk)
    if resolved:
        event_record(
            type="backup.alerts.resolved", subject=run, actor_label="backups",
            payload={"policy": run.policy.name, "alerts": resolved, "reason": f"run #{run.pk} of the policy succeeded"},
        )
    return resolved


def _run_fail(*, run: BackupRun, exc: storage.StorageError | keys.KeysUnusable) -> BackupRun:
    """The run cannot go on (a source or destination refuses us, or the encryption keys in
    the environment cannot serve it): say why, loudly."""
    if isinstance(exc, keys.KeysUnusable):
        exc = storage.StorageError(str(exc), evidence={"keys": "unusable"})
        cause = FailureCause.KEYS
    else:
        cause = FailureCause.PERMISSION if isinstance(exc, storage.AccessDenied) else FailureCause.TRANSFER_ERROR
    alert = alert_for(
        policy=run.policy, severity=AlertSeverity.CRITICAL, title=f"Backup run of {run.policy.name} failed",
        detail=exc.detail, dedup=f"run:{cause}", evidence={"run": run.pk, **exc.evidence},
    )
    Failure.objects.create(
        run=run, failed_check=FailureCheck.COPY, cause=cause, key="", detail=exc.detail[:500],
        chain=[
            {"step": f"Run #{run.pk}, phase {run.get_phase_display().lower()}", "finding": exc.detail},
            {"step": "Root cause", "finding": {
                FailureCause.PERMISSION: "the store refused the run's credentials or a bucket is missing",
                FailureCause.KEYS: "the encryption keys in the environment cannot serve this policy's copies",
            }.get(cause, "the store could not be reached")},
        ],
        resolution=Resolution.ALERTED, action="alert raised; fix the endpoint, then run again", alert=alert,
    )
    return run_finish(run_id=run.pk, error=exc.detail)


def run_execute(
    *, run_id: int, owner: str | None = None, concurrency: int | None = None, on_copy_start=None
) -> BackupRun | None:
    """Drive a run from wherever it stands to its end. Returns None when another live process
    drives it or it is finished. Transient store errors propagate (the job retries; the run
    resumes by state); refusals end the run as FAILED with an alert."""
    from backups.services.copying import run_copy
    from backups.services.retention import run_prune
    from backups.services.scan import run_scan
    from backups.services.verify import run_verify

    owner = owner or process_label()
    run = run_take(run_id=run_id, owner=owner)
    if run is None:
        return None
    publisher = progress.Publisher("run", run.pk)
    publisher.maybe(force=True)
    try:
        if run.policy.encryption == Encryption.CLIENT or run.policy.sources.filter(versions__kek_id__gt="").exists():
            keys.keys_require()  # a missing or wrong key stops the run before it writes anything
        if run.phase == RunPhase.SCAN:
            run_scan(run=run, on_page=publisher.maybe)
            _phase(run, RunPhase.COPY, publisher)
        if run.phase == RunPhase.COPY:
            if on_copy_start:
                on_copy_start()
            run_copy(run=run, owner=owner, concurrency=concurrency, on_batch=publisher.maybe)
            _phase(run, RunPhase.VERIFY, publisher)
        if run.phase == RunPhase.VERIFY:
            if run.verify != RunVerify.NONE:
                run_verify(run=run, on_batch=publisher.maybe)
            _phase(run, RunPhase.PRUNE, publisher)
        if run.phase == RunPhase.PRUNE:
            if not run.scope:  # only a whole-policy run knows what the sources hold
                run_prune(run=run)
            _phase(run, RunPhase.DONE, publisher)
    except (storage.AccessDenied, keys.KeysUnusable) as exc:
        run_release(run_id=run.pk, owner=owner)
        return _run_fail(run=run, exc=exc)
    except BaseException:
        # Hand the run back so that a retry (here or elsewhere) can take it at once.
        run_release(run_id=run.pk, owner=owner)
        raise
    return run_finish(run_id=run.pk)


# --------------------------------------------------------------------------- scheduling


def policies_due(*, now=None) -> list[BackupPolicy]:
    """Enabled policies whose last scheduled (or manual) run started an interval ago or more."""
    now = now or timezone.now()
    due = []
    for policy in BackupPolicy.objects.filter(enabled=True):
        last = (
            BackupRun.objects.filter(policy=policy)
            .exclude(trigger=RunTrigger.EVENT)
            .order_by("-created_at")
            .values_list("created_at", flat=True)
            .first()
        )
        if last is None or (now - last).total_seconds() >= policy.interval_minutes * 60:
            due.append(policy)
    return due


def scheduled_runs_start(*, now=None) -> list[BackupRun]:
    started = []
    for policy in policies_due(now=now):
        try:
            started.append(run_start(policy=policy, trigger=RunTrigger.SCHEDULE, enqueue=True))
        except RunAlreadyActive:
            continue
    return started


def event_runs_start() -> list[BackupRun]:
    """One scoped run per policy for the prefixes storage events reported."""
    started = []
    policy_ids = set(ScanRequest.objects.filter(taken_by__isnull=True).values_list("policy_id", flat=True))
    for policy in BackupPolicy.objects.filter(pk__in=policy_ids, enabled=True):
        with transaction.atomic():
            requests = list(ScanRequest.objects.filter(policy=policy, taken_by__isnull=True).order_by("pk")[:500])
            scope = [{"source": r.source_id, "prefix": r.prefix} for r in requests]
            try:
                run = run_start(policy=policy, trigger=RunTrigger.EVENT, verify=RunVerify.NONE, scope=scope, enqueue=True)
            except RunAlreadyActive:
                continue  # picked up after the active run ends
            ScanRequest.objects.filter(pk__in=[r.pk for r in requests]).update(taken_by=run)
            started.append(run)
    return started


def runs_stalled_resume() -> list[int]:
    """Re-enqueue unfinished runs nobody drives (their process died, or Redis lost the job)."""
    from backups import jobs

    resumed = []
    grace = timezone.now() - timedelta(seconds=30)
    for run in BackupRun.objects.filter(finished_at__isnull=True, created_at__lt=grace):
        if run.owner and owner_alive(run.owner, run.heartbeat_at):
            continue
        if jobs.run_job_pending(run.pk):
            continue
        jobs.run_enqueue(run.pk)
        resumed.append(run.pk)
    if resumed:
        logger.warning("resumed stalled backup runs %s", resumed)
    return resumed
