"""Write-once objects: keys Reelflow writes once (renditions named by their parameters'
digest, published packages). When one of them changes on the source, the new bytes are not an
ordinary new version: they are copied (as evidence, never as the current backup), compared with
the protected version, and

- the same bytes (a re-upload, another ETag for the same content): the new version takes over;
- other bytes: the new version is flagged (`tampered_at`), the previous good version stays the
  current one (a restore brings it back), and a critical alert is raised.

The scan decides what is a candidate (`candidate_split`); the copy phase's recording settles
candidates (`candidates_settle`).
"""

from __future__ import annotations

import fnmatch

from django.db import transaction
from django.utils import timezone

from backups.models import (
    BackupRun,
    FailureCause,
    FailureCheck,
    ObjectVersion,
    PolicySource,
    Resolution,
    VersionState,
)
from backups.services.backtrack import _failure_create, _restore_link, _step, copy_task_step, ledger_step
from backups.services.common import alert_for, key_digest
from core.models import AlertSeverity


def patterns(source: PolicySource) -> list[str]:
    return [line.strip() for line in source.write_once_patterns.splitlines() if line.strip()]


def is_write_once(globs: list[str], key: str) -> bool:
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in globs)


def candidates_known(*, source: PolicySource, keys: list[str]) -> dict[str, list[dict]]:
    """Earlier candidates of these keys (copied or not), by key."""
    found: dict[str, list[dict]] = {}
    rows = ObjectVersion.objects.filter(source=source, key__in=keys, is_current=False, overwrites__isnull=False)
    for row in rows.values("id", "key", "etag", "size", "state"):
        found.setdefault(row["key"], []).append(row)
    return found


@transaction.atomic
def candidates_settle(*, run: BackupRun, version_ids: list[int]) -> int:
    """Copied candidates: promote those with the protected version's bytes, flag the others.
    Returns how many were flagged."""
    now = timezone.now()
    flagged = 0
    candidates = ObjectVersion.objects.filter(
        pk__in=version_ids, overwrites__isnull=False, tampered_at__isnull=True, state=VersionState.PROTECTED
    ).select_related("overwrites", "source__policy", "copied_by")
    for candidate in candidates:
        previous = candidate.overwrites
        if previous.sha256 == candidate.sha256 or not previous.is_current:
            # Same content (or the protected version is gone already): an ordinary new version.
            ObjectVersion.objects.filter(pk=previous.pk, is_current=True).update(is_current=False, superseded_at=now)
            ObjectVersion.objects.filter(pk=candidate.pk).update(is_current=True, overwrites=None)
            continue
        ObjectVersion.objects.filter(pk=candidate.pk).update(tampered_at=now)
        _flag(run=run, candidate=candidate, previous=previous)
        flagged += 1
    return flagged


def _flag(*, run: BackupRun, candidate: ObjectVersion, previous: ObjectVersion) -> None:
    policy = candidate.source.policy
    detail = (
        f"{candidate.key} is written once, but its bytes changed: SHA-256 {candidate.sha256[:12]} "
        f"({candidate.size} bytes) replaced {previous.sha256[:12]} ({previous.size} bytes)"
    )
    chain = [
        _step("Copy of the new version", detail),
        _step("Write-once rule", f"the key matches {policy.name}'s write-once patterns: Reelflow never rewrites it"),
        copy_task_step(candidate),
        ledger_step(previous),
        _step("Root cause", "the object was overwritten outside Reelflow (tampering, or a defect writing the key twice)"),
        _step("Kept", f"version {previous.version_label} stays the current backup; the new bytes are kept as evidence"),
    ]
    alert = alert_for(
        policy=policy, severity=AlertSeverity.CRITICAL, title=f"Write-once object overwritten: {candidate.key}",
        detail=f"{detail}. The previous version is kept as the current backup; restore it: "
        f"{_restore_link(previous, policy)}",
        dedup=f"{FailureCause.WRITE_ONCE_CHANGED}:{candidate.source_id}:{key_digest(candidate.key)}",
        subject=candidate,
        evidence={"run": run.pk, "key": candidate.key, "new_sha256": candidate.sha256, "kept_sha256": previous.sha256},
    )
    _failure_create(
        run=run, version=candidate, task=candidate.copied_by, failed_check=FailureCheck.COPY,
        cause=FailureCause.WRITE_ONCE_CHANGED, detail=detail, chain=chain, resolution=Resolution.ALERTED,
        action=f"previous version {previous.version_label} kept as current; alert raised", alert=alert,
    )
