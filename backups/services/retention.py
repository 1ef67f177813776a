"""Retention: which superseded and deleted versions the ledger forgets, and deleting their
backup copies once no remaining version refers to the same bytes.

Two ways, per policy:
- a keep-schedule (`keep_last`, `keep_hourly` … `keep_yearly`), restic's `forget --keep-*`
  selection (backups/forget.py) applied to each key's versions;
- else `retention_days`: versions that left the source more than that many days ago go.

Whatever the rule says, a version is never forgotten while its copy is under S3 Object Lock
(`locked_until` in the future) or a legal hold, and never if it is the current one or the
evidence of a write-once overwrite. `retention_plan` is the dry run: every version considered,
kept or not, and why.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from backups import forget, storage
from backups.models import BackupPolicy, BackupRun, Failure, ObjectVersion, ScanRequest
from backups.services.common import destination_place

logger = logging.getLogger(__name__)

BATCH = 500
FIELDS = ("pk", "source_id", "key", "etag", "version_id", "first_seen_at", "is_current", "superseded_at",
          "deleted_at", "locked_until", "legal_hold", "tampered_at", "overwrites_id", "backup_bucket", "backup_key")  # fmt: skip


@dataclass
class Verdict:
    version_id: int
    key: str
    label: str
    first_seen_at: datetime
    keep: bool
    reasons: list[str] = field(default_factory=list)


def schedule_of(policy: BackupPolicy) -> forget.Keep:
    return forget.Keep(
        last=policy.keep_last, hourly=policy.keep_hourly, daily=policy.keep_daily, weekly=policy.keep_weekly,
        monthly=policy.keep_monthly, yearly=policy.keep_yearly,
    )


def _guards(row: dict, now: datetime) -> list[str]:
    """Reasons no rule can override."""
    reasons = []
    if row["is_current"]:
        reasons.append("current version")
    if row["locked_until"] and row["locked_until"] > now:
        reasons.append(f"copy locked until {row['locked_until']:%Y-%m-%d %H:%M} UTC")
    if row["legal_hold"]:
        reasons.append("legal hold")
    if row["tampered_at"] or row["overwrites_id"]:
        reasons.append("evidence of a write-once overwrite")
    return reasons


def _key_verdicts(rows: list[dict], *, keep: forget.Keep, cutoff: datetime | None, now: datetime) -> list[Verdict]:
    snapshots = [r for r in rows if not (r["tampered_at"] or r["overwrites_id"])]
    chosen = forget.select([(r["pk"], r["first_seen_at"]) for r in snapshots], keep) if cutoff is None else {}
    verdicts = []
    for row in rows:
        reasons = _guards(row, now)
        if cutoff is None:
            reasons += chosen.get(row["pk"], [])
        else:
            left = row["deleted_at"] or row["superseded_at"]
            if left is not None and left >= cutoff:
                reasons.append(f"left the source less than {(now - cutoff).days} days ago")
        label = row["version_id"] or row["etag"]
        verdicts.append(Verdict(row["pk"], row["key"], label, row["first_seen_at"], bool(reasons), reasons))
    return verdicts


def retention_plan(*, policy: BackupPolicy, now: datetime | None = None) -> list[Verdict]:
    """The dry run: a verdict for every version of every key that has an old version."""
    now = now or timezone.now()
    keep = schedule_of(policy)
    cutoff = now - timedelta(days=policy.retention_days) if keep.empty else None
    with_history = ObjectVersion.objects.filter(source__policy=policy, is_current=False)
    pairs = set(with_history.values_list("source_id", "key"))
    keys = sorted({key for _, key in pairs})
    verdicts: list[Verdict] = []
    for start in range(0, len(keys), BATCH):  # bounded IN lists (SQLite's variable limit)
        rows = (
            ObjectVersion.objects.filter(source__policy=policy, key__in=keys[start : start + BATCH])
            .order_by("source_id", "key", "-first_seen_at", "-pk")
            .values(*FIELDS)
        )
        for ident, group in itertools.groupby(rows, key=lambda r: (r["source_id"], r["key"])):
            if ident in pairs:
                verdicts += _key_verdicts(list(group), keep=keep, cutoff=cutoff, now=now)
    return verdicts


def run_prune(*, run: BackupRun, now=None) -> int:
    """Forget what the plan lets go; returns how many ledger versions were pruned. A copy is
    deleted once no remaining version refers to its bytes; a copy the store refuses to delete
    (still locked there) keeps its versions in the ledger, and the refusal is a finding."""
    from backups.services.locks import delete_refused_record

    policy = run.policy
    now = now or timezone.now()
    going = [v.version_id for v in retention_plan(policy=policy, now=now) if not v.keep]
    dst = destination_place(policy)
    pruned = 0
    for start in range(0, len(going), BATCH):
        batch = list(
            ObjectVersion.objects.filter(pk__in=going[start : start + BATCH]).values_list("pk", "backup_bucket", "backup_key")
        )
        ids = {pk for pk, _, _ in batch}
        blobs = {(bucket, key) for _, bucket, key in batch if key}
        still_used = set(
            ObjectVersion.objects.filter(backup_key__in=[key for _, key in blobs]).exclude(pk__in=ids)
            .values_list("backup_bucket", "backup_key")
        )  # fmt: skip
        for bucket, key in blobs - still_used:
            try:
                storage.delete(storage.Place.resolve(target=dst.target, bucket=bucket), key, versions=bool(policy.lock_mode))
            except storage.AccessDenied as exc:
                delete_refused_record(run=run, bucket=bucket, key=key, detail=exc.detail)
                ids -= {pk for pk, b, k in batch if (b, k) == (bucket, key)}
            except storage.StorageError as exc:
                # Forgotten anyway: a leftover copy costs space, not safety.
                logger.warning("retention could not delete %s/%s: %s", bucket, key, exc.detail)
        with transaction.atomic():
            Failure.objects.filter(version_id__in=ids).update(version=None)
            ObjectVersion.objects.filter(pk__in=ids).delete()
        pruned += len(ids)
    cutoff = now - timedelta(days=policy.retention_days)
    ScanRequest.objects.filter(policy=policy, taken_by__isnull=False, created_at__lt=cutoff).delete()
    BackupRun.objects.filter(pk=run.pk).update(versions_pruned=F("versions_pruned") + pruned)
    return pruned
