"""Backtrack and restart: when a check fails, walk back to the cause and redo only that step.

The walk, recorded as the failure's chain (failure first, root last): the check that failed ->
the ledger version (what we promised: SHA-256, size, ETag) -> the copy task and run that wrote
the backup copy -> what the source says now (same version? same bytes?) -> the root cause and
the step restarted.

Causes and what is restarted:

| cause              | restart                                                                       |
| ------------------ | ----------------------------------------------------------------------------- |
| backup corrupted / | rewrite the copy from the intact source version; else from another good copy |
| missing            | of the same bytes (another destination); else alert: no good copy remains     |
| source corrupted   | (same ETag, other bytes) backup intact: alert, or heal the source from it     |
| source changed     | copy the new version (a new task in the same run)                             |
| transfer error     | retried in the task; then alert, and the next run retries                      |
| permission         | alert (retrying cannot help until credentials or policies change)             |

These functions run in the thread that drives the run; they do S3 work inline because
failures are rare and each needs a decision before the next.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F
from django.urls import reverse
from django.utils import timezone
from django.utils.http import urlencode

from backups import crypto, storage
from backups.models import (
    BackupRun,
    CopyMethod,
    CopyTask,
    Encryption,
    Failure,
    FailureCause,
    FailureCheck,
    ObjectVersion,
    Resolution,
    TaskKind,
    TaskState,
    VersionState,
)
from backups.services import keys
from backups.services.common import alert_for, destination_place, key_digest, source_place
from backups.services.rewrite import blob_rewrite, sealing_of
from core import s3
from core.models import AlertSeverity
from core.services import alert_resolve, event_record

logger = logging.getLogger(__name__)


def _step(step: str, finding: str, **ref) -> dict:
    return {"step": step, "finding": finding, **({"ref": ref} if ref else {})}


def _when(value) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else "never"


def _short(sha: str) -> str:
    return sha[:12] if sha else "—"


def ledger_step(version: ObjectVersion) -> dict:
    return _step(
        "Ledger",
        f"{version.key} version {version.version_label} ({version.size} bytes), first seen "
        f"{_when(version.first_seen_at)}; SHA-256 {_short(version.sha256)} recorded at copy time; "
        f"last verified {_when(version.verified_at)}",
        version=version.pk,
    )


def copy_task_step(version: ObjectVersion) -> dict:
    task = version.copied_by
    if task is None:
        return _step("Copy task", "no copy task on record (the version was never copied)")
    return _step(
        f"Copy task #{task.pk} in run #{task.run_id}",
        f"{task.get_method_display() or task.method} on {_when(task.finished_at)}, after {task.attempts} "
        f"attempt(s); wrote {version.backup_bucket}/{version.backup_key}",
        task=task.pk, run=task.run_id,
    )


def _source_step(version: ObjectVersion, now: dict | None) -> dict:
    if not now:
        return _step("Source now", "not checked")
    if now.get("error"):
        return _step("Source now", f"could not be read: {now['error']}")
    if now.get("missing"):
        return _step("Source now", "deleted from the source")
    if now.get("etag") == version.etag and now.get("size") == version.size:
        return _step("Source now", f"same version (ETag {now['etag']}, {now['size']} bytes)")
    return _step("Source now", f"a newer version: ETag {now.get('etag')}, {now.get('size')} bytes")


def _source_head(version: ObjectVersion) -> tuple[storage.Place, dict]:
    place = source_place(version.source)
    try:
        found = storage.head(place, version.key)
    except storage.StorageError as exc:
        return place, {"error": exc.detail}
    if found is None:
        return place, {"missing": True}
    return place, {"etag": s3.etag_clean(found.get("ETag")), "size": int(found.get("ContentLength") or 0)}


def _failure_create(
    *, run: BackupRun, version: ObjectVersion | None, task: CopyTask | None, failed_check: str, cause: str,
    detail: str, chain: list[dict], resolution: str = Resolution.OPEN, action: str = "",
    repair_task: CopyTask | None = None, alert=None,
) -> Failure:
    now = timezone.now()
    failure = Failure.objects.create(
        run=run, version=version, task=task, failed_check=failed_check, cause=cause, key=version.key if version else "",
        detail=detail[:500], chain=chain, resolution=resolution, action=action[:300], repair_task=repair_task,
        alert=alert, created_at=now, resolved_at=now if resolution == Resolution.REPAIRED else None,
    )
    BackupRun.objects.filter(pk=run.pk).update(
        objects_failed=F("objects_failed") + 1,
        objects_repaired=F("objects_repaired") + (1 if resolution == Resolution.REPAIRED else 0),
    )
    event_record(
        type="backup.failure",
        subject=failure,
        actor_label="backups",
        payload={"run": run.pk, "cause": cause, "key": failure.key, "resolution": resolution},
    )
    return failure


def _restore_link(version: ObjectVersion, policy) -> str:
    query = urlencode({"policy": policy.pk, "scope": "object", "selector": version.key})
    return f"{reverse('backups:restore_new')}?{query}"


def _older_good_version(version: ObjectVersion) -> ObjectVersion | None:
    return (
        ObjectVersion.objects.filter(
            source_id=version.source_id, key=version.key, state=VersionState.PROTECTED, first_seen_at__lt=version.first_seen_at
        )
        .exclude(pk=version.pk)
        .order_by("-first_seen_at", "-pk")
        .first()
    )


def _repair_task(*, run: BackupRun, version: ObjectVersion, method: str, error: str = "") -> CopyTask:
    now = timezone.now()
    return CopyTask.objects.create(
        run=run, version=version, kind=TaskKind.REPAIR, state=TaskState.FAILED if error else TaskState.DONE,
        method=method, attempts=1, sha256=version.sha256, bytes_copied=0 if error else version.size,
        error=error, started_at=now, finished_at=now, created_at=now,
    )


# --------------------------------------------------------------------------- copy failures


def _restart_with_new_version(*, run: BackupRun, version: ObjectVersion, now_info: dict) -> CopyTask | None:
    """The source moved on: record its new version and queue its copy in this run."""
    now = timezone.now()
    if now_info.get("missing"):
        ObjectVersion.objects.filter(pk=version.pk).update(is_current=False, deleted_at=now)
        return None
    ObjectVersion.objects.filter(source_id=version.source_id, key=version.key, is_current=True).update(
        is_current=False, superseded_at=now
    )
    newer = ObjectVersion.objects.create(
        source_id=version.source_id, key=version.key, etag=now_info["etag"], size=now_info["size"],
        first_seen_run=run, last_seen_run=run, first_seen_at=now,
    )
    return CopyTask.objects.create(run=run, version=newer, created_at=now)


@transaction.atomic
def source_changed_during_copy(*, run: BackupRun, version: ObjectVersion, task: CopyTask, source_now: dict) -> Failure:
    """The copy finished and holds the version we listed, but the source changed meanwhile."""
    restart = _restart_with_new_version(run=run, version=version, now_info=source_now)
    chain = [
        _step(f"Copy task #{task.pk}", f"copied {version.key} version {version.etag}; a check after the copy found the source changed"),
        ledger_step(version),
        _source_step(version, source_now),
        _step("Root cause", "the source was written while it was being copied; the copy is a good copy of the version listed"),
        _step("Restart", f"copy of the new version queued as task #{restart.pk}" if restart else "the object was deleted: nothing more to copy"),
    ]
    return _failure_create(
        run=run, version=version, task=task, failed_check=FailureCheck.COPY, cause=FailureCause.SOURCE_CHANGED,
        detail=f"{version.key} changed while it was copied", chain=chain,
        resolution=Resolution.OPEN if restart else Resolution.REPAIRED,
        action="copying the new version" if restart else "kept the copy of the last version", repair_task=restart,
    )


@transaction.atomic
def copy_failure_record(*, run: BackupRun, version: ObjectVersion, task: CopyTask, outcome) -> Failure:
    """A copy task gave up: record the chain and take the step its cause calls for."""
    now = timezone.now()
    policy = run.policy
    cause = outcome.cause
    task.state = TaskState.SKIPPED if cause == FailureCause.SOURCE_CHANGED else TaskState.FAILED
    task.error_cause, task.error, task.finished_at = cause, outcome.detail[:2000], now
    task.attempts = outcome.spec.attempts_before + outcome.tries
    task.save(update_fields=["state", "error_cause", "error", "finished_at", "attempts"])
    attempts = outcome.evidence.get("attempts") or [outcome.detail]
    chain = [
        _step(f"Copy task #{task.pk} in run #{run.pk}", f"failed after {len(attempts)} attempt(s): {attempts[-1]}", task=task.pk),
        ledger_step(version),
        _source_step(version, outcome.source_now),
    ]
    alert, restart, resolution, action = None, None, Resolution.ALERTED, ""
    dedup = f"{cause}:{version.source_id}:{key_digest(version.key)}"
    if cause == FailureCause.SOURCE_CHANGED and version.version_id and not version.is_current:
        from backups.services.scan_versions import version_missed_record

        alert = version_missed_record(run=run, version=version, detail=outcome.detail)
        chain.append(_step("Root cause", "this version was deleted from the versioned source before it was copied"))
        action = "recorded as missed; alert raised (the version cannot be copied any more)"
    elif cause == FailureCause.SOURCE_CHANGED:
        if version.state == VersionState.PENDING:
            version.state = VersionState.VANISHED
            version.save(update_fields=["state"])
        restart = _restart_with_new_version(run=run, version=version, now_info=outcome.source_now or {"missing": True})
        chain.append(_step("Root cause", "the source was replaced or deleted after it was listed"))
        chain.append(_step("Restart", f"new version queued as task #{restart.pk}" if restart else "deleted: nothing to copy"))
        resolution = Resolution.OPEN if restart else Resolution.REPAIRED
        action = "copying the new version" if restart else "object deleted from the source"
    elif cause == FailureCause.SOURCE_CORRUPTED:
        version.state = VersionState.LOST
        version.save(update_fields=["state"])
        older = _older_good_version(version)
        chain.append(_step(
            "Root cause",
            "the source's bytes do not match its own ETag on repeated reads (or it fails every read) while its "
            "metadata is unchanged: the source is corrupted, and no good copy of this version exists",
        ))
        chain.append(_step(
            "Older versions",
            f"newest good backup: version {older.version_label} from {_when(older.first_seen_at)}" if older else "none backed up",
        ))
        alert = alert_for(
            policy=policy, severity=AlertSeverity.CRITICAL, title=f"Source corrupted before backup: {version.key}",
            detail=outcome.detail, dedup=dedup, subject=version,
            evidence={"run": run.pk, "task": task.pk, **outcome.evidence},
        )
        action = "alert raised; " + (f"restore version {older.version_label} if needed" if older else "no backup exists")
    elif cause == FailureCause.PERMISSION:
        chain.append(_step("Root cause", "the store refused the credentials or the bucket does not exist"))
        alert = alert_for(
            policy=policy, severity=AlertSeverity.WARNING, title=f"Backups of {policy.name}: permission denied",
            detail=outcome.detail, dedup="permission", evidence={"run": run.pk, **outcome.evidence},
        )
        action = "alert raised; the next run retries"
    else:
        chain.append(_step("Root cause", "the network or a server failed on every attempt"))
        alert = alert_for(
            policy=policy, severity=AlertSeverity.WARNING, title=f"Backups of {policy.name}: transfer errors",
            detail=outcome.detail, dedup="transfer", evidence={"run": run.pk, **outcome.evidence},
        )
        action = "alert raised; the next run retries"
    return _failure_create(
        run=run, version=version, task=task, failed_check=FailureCheck.COPY, cause=cause, detail=outcome.detail,
        chain=chain, resolution=resolution, action=action, repair_task=restart, alert=alert,
    )


# --------------------------------------------------------------------------- verification failures


def _other_good_copy(version: ObjectVersion) -> tuple[storage.Place, str, bytes | None] | None:
    """Another backup copy of the same bytes (another policy or destination) that verifies:
    (place, key, its data key when it is encrypted)."""
    others = (
        ObjectVersion.objects.filter(sha256=version.sha256, state=VersionState.PROTECTED)
        .exclude(backup_bucket=version.backup_bucket, backup_key=version.backup_key)
        .select_related("source__policy__destination_endpoint")
        .order_by("-verified_at")[:5]
    )
    for other in others:
        try:
            place = storage.Place.resolve(
                target=storage.endpoint_target(other.source.policy.destination_endpoint), bucket=other.backup_bucket
            )
            dek = keys.dek_of(other)
            if storage.read_digest(place, other.backup_key, dek=dek).sha256 == version.sha256:
                return place, other.backup_key, dek
        except (storage.StorageError, keys.KeysUnusable, crypto.KeyError_):
            continue
    return None


@dataclass(frozen=True)
class _RepairOrigin:
    """Where good bytes for a damaged backup copy can be read from."""

    place: storage.Place
    key: str
    if_match: str | None
    source: bool
    method: str
    label: str
    dek: bytes | None = None


def _intact_source(version: ObjectVersion, chain: list[dict]) -> _RepairOrigin | None:
    """The current source version, if it is still the ledger's version and hashes to its SHA-256."""
    src, now_info = _source_head(version)
    chain.append(_source_step(version, now_info))
    if now_info.get("etag") != version.etag or now_info.get("size") != version.size:
        return None
    try:
        digest = storage.read_digest(src, version.key, if_match=version.etag, source=True)
    except storage.StorageError as exc:
        chain.append(_step("Source bytes", f"unreadable: {exc.detail}"))
        return None
    if digest.sha256 != version.sha256:
        chain.append(_step(
            "Source bytes", f"SHA-256 {_short(digest.sha256)} ≠ ledger {_short(version.sha256)}: the source is corrupted too"
        ))
        return None
    chain.append(_step("Source bytes", "SHA-256 matches the ledger: the source version is intact"))
    return _RepairOrigin(src, version.key, version.etag, True, CopyMethod.INLINE, "the intact source version")


def _repair_origin(version: ObjectVersion, chain: list[dict]) -> _RepairOrigin | None:
    """The intact source version, else another good backup copy of the same bytes, else None;
    what was found on the way goes into the chain."""
    origin = None
    if version.is_current:
        origin = _intact_source(version, chain)
    else:
        gone = version.deleted_at or version.superseded_at
        chain.append(_step("Source", f"this version left the source on {_when(gone)}; only backups hold it"))
    if origin is None:
        other = _other_good_copy(version)
        if other is not None:
            chain.append(_step("Other backups", f"a good copy of the same bytes at {other[0].bucket}/{other[1]}"))
            origin = _RepairOrigin(
                other[0], other[1], None, False, CopyMethod.FROM_BACKUP, "another good backup copy", other[2]
            )
    return origin


def sharing_versions(version: ObjectVersion):
    """Every ledger version whose backup copy is `version`'s (identical bytes are stored once)."""
    return ObjectVersion.objects.filter(backup_bucket=version.backup_bucket, backup_key=version.backup_key)


def backup_damage_handle(
    *, run: BackupRun, version: ObjectVersion, cause: str, detail: str, evidence: dict | None = None
) -> Failure:
    """A backup copy is missing or does not hash to the ledger's SHA-256: trace and repair.
    One copy shared by several versions is one finding that names them all."""
    sharing = list(sharing_versions(version).exclude(state=VersionState.LOST).order_by("pk")) or [version]
    sharing_versions(version).exclude(state=VersionState.LOST).update(state=VersionState.DAMAGED)
    version.state = VersionState.DAMAGED
    dst = destination_place(run.policy)
    chain = [_step("Backup copy check", detail), ledger_step(version), copy_task_step(version)]
    if len(sharing) > 1:
        chain.append(_step("Shared copy", f"{len(sharing)} ledger versions have these bytes and share this one copy"))
    origin = _repair_origin(version, chain)
    damaged = "missing" if cause == FailureCause.BACKUP_MISSING else "corrupted"
    chain.append(_step("Root cause", f"the backup copy was {damaged} after it was written and checked"))
    dedup = f"{cause}:blob:{key_digest(version.backup_bucket + '/' + version.backup_key)}"
    references = [{"version": v.pk, "key": v.key, "label": v.version_label} for v in sharing] if len(sharing) > 1 else []
    if origin is not None:
        failure = _damaged_copy_rewrite(
            run=run, version=version, origin=origin, target=dst, cause=cause, detail=detail, damaged=damaged,
            chain=chain, dedup=dedup, evidence=evidence,
        )
    else:
        failure = _damaged_copy_lost(
            run=run, version=version, cause=cause, detail=detail, chain=chain, dedup=dedup, evidence=evidence
        )
    if references:
        Failure.objects.filter(pk=failure.pk).update(references=references)
        failure.references = references
    return failure


def _damaged_copy_rewrite(
    *, run: BackupRun, version: ObjectVersion, origin: _RepairOrigin, target: storage.Place, cause: str,
    detail: str, damaged: str, chain: list[dict], dedup: str, evidence: dict | None,
) -> Failure:
    """Rewrite the backup copy from `origin`; repaired, or alerted and left to be retried."""
    policy = run.policy
    try:
        blob_rewrite(
            origin=origin.place, origin_key=origin.key, if_match=origin.if_match, expected_sha=version.sha256,
            size=version.size, target=target, target_key=version.backup_key, source=origin.source,
            origin_dek=origin.dek, seal=sealing_of(version), sse=run.policy.encryption == Encryption.SERVER,
        )
    except storage.StorageError as exc:
        # A good origin exists: this is not a loss. The copy stays DAMAGED, so the next
        # verification (or "Retry" on the page) tries the repair again.
        task = _repair_task(run=run, version=version, method=origin.method, error=exc.detail)
        chain.append(_step(f"Restart: repair task #{task.pk}", f"failed: {exc.detail}"))
        alert = alert_for(
            policy=policy, severity=AlertSeverity.WARNING, title=f"Backup copy {damaged}, repair failed: {version.key}",
            detail=exc.detail, dedup=dedup, subject=version, evidence={"run": run.pk, **(evidence or {})},
        )
        return _failure_create(
            run=run, version=version, task=version.copied_by, failed_check=FailureCheck.VERIFY_BACKUP, cause=cause,
            detail=detail, chain=chain, resolution=Resolution.ALERTED,
            action=f"repair from {origin.label} failed; it is retried", repair_task=task, alert=alert,
        )
    task = _repair_task(run=run, version=version, method=origin.method)
    now = timezone.now()
    # Every version sharing these bytes shares the copy, so all of them are whole again.
    ObjectVersion.objects.filter(backup_bucket=version.backup_bucket, backup_key=version.backup_key).exclude(
        state=VersionState.LOST
    ).update(state=VersionState.PROTECTED, verified_at=now)
    chain.append(_step(
        f"Restart: repair task #{task.pk}", f"rewrote the backup copy from {origin.label}; read back, SHA-256 matches"
    ))
    alert = alert_for(
        policy=policy, severity=AlertSeverity.WARNING, title=f"Backup copy {damaged}, repaired: {version.key}",
        detail=detail, dedup=dedup, subject=version, evidence={"run": run.pk, **(evidence or {})},
    )
    alert_resolve(alert=alert)
    return _failure_create(
        run=run, version=version, task=version.copied_by, failed_check=FailureCheck.VERIFY_BACKUP, cause=cause,
        detail=detail, chain=chain, resolution=Resolution.REPAIRED, action=f"re-copied from {origin.label}",
        repair_task=task, alert=alert,
    )


def _damaged_copy_lost(
    *, run: BackupRun, version: ObjectVersion, cause: str, detail: str, chain: list[dict], dedup: str,
    evidence: dict | None,
) -> Failure:
    """No origin holds the bytes: the version (and every one sharing its copy) is LOST; the alert
    points at the newest older version."""
    sharing_versions(version).update(state=VersionState.LOST)
    ObjectVersion.objects.filter(pk=version.pk).update(state=VersionState.LOST)
    older = _older_good_version(version)
    chain.append(_step(
        "Older versions",
        f"newest good backup of this key: version {older.version_label} from {_when(older.first_seen_at)}"
        if older else "no other backed-up version of this key",
    ))
    alert = alert_for(
        policy=run.policy, severity=AlertSeverity.CRITICAL, title=f"No good copy remains: {version.key}",
        detail=f"{detail}. The source cannot provide these bytes and no other backup holds them.",
        dedup=dedup, subject=version, evidence={"run": run.pk, "sha256": version.sha256, **(evidence or {})},
    )
    return _failure_create(
        run=run, version=version, task=version.copied_by, failed_check=FailureCheck.VERIFY_BACKUP, cause=cause,
        detail=detail, chain=chain, resolution=Resolution.ALERTED, action="alert raised: no good copy remains",
        alert=alert,
    )


def source_corruption_handle(*, run: BackupRun, version: ObjectVersion, detail: str, evidence: dict) -> Failure:
    """The source's bytes no longer hash to the ledger while its ETag and size are unchanged
    (bitrot, not a new version); its backup copy was just verified good."""
    policy = run.policy
    chain = [
        _step("Source check", detail),
        _step("Source metadata", f"ETag {version.etag} and size {version.size} unchanged: not a new version"),
        ledger_step(version),
        copy_task_step(version),
        _step("Backup copy", "verified in this run: SHA-256 matches the ledger"),
        _step("Root cause", "the source's bytes changed underneath unchanged metadata: corruption on the source store"),
    ]
    dedup = f"{FailureCause.SOURCE_CORRUPTED}:{version.source_id}:{key_digest(version.key)}"
    if policy.heal_source:
        try:
            blob_rewrite(
                origin=destination_place(policy), origin_key=version.backup_key, if_match=None,
                expected_sha=version.sha256, size=version.size, target=source_place(version.source), target_key=version.key,
                origin_dek=keys.dek_of(version),
            )
        except storage.StorageError as exc:
            chain.append(_step("Restart: heal the source", f"failed: {exc.detail}"))
        else:
            task = _repair_task(run=run, version=version, method=CopyMethod.FROM_BACKUP)
            chain.append(_step(f"Restart: repair task #{task.pk}", "restored the source from its backup; read back, SHA-256 matches"))
            alert = alert_for(
                policy=policy, severity=AlertSeverity.WARNING, title=f"Source corrupted, healed from backup: {version.key}",
                detail=detail, dedup=dedup, subject=version, evidence={"run": run.pk, **evidence},
            )
            alert_resolve(alert=alert)
            return _failure_create(
                run=run, version=version, task=None, failed_check=FailureCheck.VERIFY_SOURCE,
                cause=FailureCause.SOURCE_CORRUPTED, detail=detail, chain=chain, resolution=Resolution.REPAIRED,
                action="source restored from backup", repair_task=task, alert=alert,
            )
    alert = alert_for(
        policy=policy, severity=AlertSeverity.CRITICAL, title=f"Source corrupted (backup intact): {version.key}",
        detail=f"{detail}. Restore it from the backup: {_restore_link(version, policy)}",
        dedup=dedup, subject=version, evidence={"run": run.pk, **evidence},
    )
    return _failure_create(
        run=run, version=version, task=None, failed_check=FailureCheck.VERIFY_SOURCE, cause=FailureCause.SOURCE_CORRUPTED,
        detail=detail, chain=chain, resolution=Resolution.ALERTED,
        action="alert raised; restore the object from its backup", alert=alert,
    )


# --------------------------------------------------------------------------- retry from the page


def failure_retry(*, failure_id: int) -> Failure:
    """Take the failed step again: a copy failure asks the next event run to copy the object;
    a verification failure is checked again now and, if it still fails, traced and repaired."""
    from backups.services.intake import scan_request_add
    from backups.services.verify import VerifySpec, verify_one

    failure = Failure.objects.select_related("run__policy", "version__source__endpoint", "alert").get(pk=failure_id)
    version = failure.version
    if failure.resolution == Resolution.REPAIRED or version is None:
        return failure
    if failure.failed_check == FailureCheck.COPY:
        scan_request_add(
            bucket=storage.bucket_resolve(version.source.bucket), prefix=version.key, reason=f"retry of failure #{failure.pk}"
        )
        failure.action = "copy requested again (next event run)"
        failure.save(update_fields=["action"])
        return failure
    policy = failure.run.policy
    dst = destination_place(policy)
    spec = VerifySpec(
        version.pk, version.key, version.etag, version.size, version.sha256,
        storage.Place.resolve(target=dst.target, bucket=version.backup_bucket or dst.bucket), version.backup_key,
        source_place(version.source) if failure.failed_check == FailureCheck.VERIFY_SOURCE and version.is_current else None,
        keys.dek_of(version),
    )
    outcome = verify_one(spec)
    now = timezone.now()
    if outcome.backup_ok and outcome.source_state != "corrupted":
        ObjectVersion.objects.filter(pk=version.pk).update(state=VersionState.PROTECTED, verified_at=now)
        failure.resolution, failure.resolved_at = Resolution.REPAIRED, now
        failure.action = f"checked again {_when(now)}: verifies"
        failure.save(update_fields=["resolution", "resolved_at", "action"])
        if failure.alert is not None:
            alert_resolve(alert=failure.alert)
        return failure
    if not outcome.backup_ok:
        newer = backup_damage_handle(run=failure.run, version=version, cause=outcome.cause, detail=outcome.detail, evidence=outcome.evidence)
    else:
        newer = source_corruption_handle(run=failure.run, version=version, detail=outcome.source_detail, evidence=outcome.evidence)
    failure.action = f"retried: see failure #{newer.pk}"
    if newer.resolution == Resolution.REPAIRED:
        failure.resolution, failure.resolved_at = Resolution.REPAIRED, now
    failure.save(update_fields=["action", "resolution", "resolved_at"])
    return failure
