"""Verify: re-read backup copies and compare them with the ledger's SHA-256 (never with the
source, so corruption that spread from the source is still caught); optionally re-read the
source too, to tell bitrot (same ETag, other bytes) from a real change.

Plans: FULL reads every copy each run. SAMPLED reads, oldest-verified first, enough copies each
run that every one is read within `verify_within_days` when runs come every
`interval_minutes`, plus any copy that would otherwise pass that limit before the next run.
"""

from __future__ import annotations

import logging
import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import F, Q
from django.utils import timezone

from backups import storage
from backups.models import (
    BackupPolicy,
    BackupRun,
    Failure,
    FailureCause,
    FailureCheck,
    ObjectVersion,
    RunVerify,
    VerifyMode,
    VersionState,
)
from backups.services import keys
from backups.services.common import destination_place, source_place

logger = logging.getLogger(__name__)

BATCH = 256


@dataclass(frozen=True)
class VerifySpec:
    version_id: int
    key: str
    etag: str
    size: int
    sha256: str
    backup: storage.Place
    backup_key: str
    source: storage.Place | None  # set when the source is checked too
    dek: bytes | None = None  # set when the copy is encrypted: checked after decryption


@dataclass
class VerifyOutcome:
    spec: VerifySpec
    backup_ok: bool
    cause: str = ""
    detail: str = ""
    evidence: dict = field(default_factory=dict)
    # "ok", "changed" (a new version: the scan's business), "corrupted", or "" when not checked.
    source_state: str = ""
    source_detail: str = ""


def _read_with_retries(
    place: storage.Place, key: str, *, if_match: str | None = None, source: bool = False, dek: bytes | None = None
):
    tries = 0
    while True:
        tries += 1
        try:
            return storage.read_digest(place, key, if_match=if_match, source=source, md5=False, dek=dek)
        except storage.TransferFailed:
            if tries >= settings.BACKUP_TASK_ATTEMPTS:
                raise
            time.sleep(0.2 * 4 ** (tries - 1))


def verify_one(spec: VerifySpec) -> VerifyOutcome:
    """Runs in a worker thread: S3 only."""
    where = f"{spec.backup.bucket}/{spec.backup_key}"
    try:
        digest = _read_with_retries(spec.backup, spec.backup_key, dek=spec.dek)
    except storage.ContentMismatch as exc:
        # An encrypted copy whose ciphertext does not authenticate: altered or damaged.
        return VerifyOutcome(spec, False, FailureCause.BACKUP_CORRUPTED, f"backup copy {where}: {exc.detail}", exc.evidence)
    except storage.ObjectMissing:
        return VerifyOutcome(spec, False, FailureCause.BACKUP_MISSING, f"backup copy {where} is missing")
    except storage.AccessDenied as exc:
        return VerifyOutcome(spec, False, FailureCause.PERMISSION, exc.detail, exc.evidence)
    except storage.TransferFailed as exc:
        return VerifyOutcome(
            spec, False, FailureCause.BACKUP_CORRUPTED, f"backup copy {where} fails every read: {exc.detail}", exc.evidence
        )
    if digest.sha256 != spec.sha256 or digest.size != spec.size:
        return VerifyOutcome(
            spec, False, FailureCause.BACKUP_CORRUPTED,
            f"backup copy {where} has SHA-256 {digest.sha256[:12]} ({digest.size} bytes), "
            f"the ledger says {spec.sha256[:12]} ({spec.size} bytes)",
            {"read_sha256": digest.sha256, "read_size": digest.size, "ledger_sha256": spec.sha256},
        )
    outcome = VerifyOutcome(spec, True)
    if spec.source is None:
        return outcome
    try:
        source = _read_with_retries(spec.source, spec.key, if_match=spec.etag, source=True)
    except storage.SourceChanged:
        outcome.source_state = "changed"
        return outcome
    except storage.AccessDenied as exc:
        outcome.source_state, outcome.source_detail = "", exc.detail
        return outcome
    except storage.TransferFailed as exc:
        outcome.source_state = "corrupted"
        outcome.source_detail = f"source {spec.source.bucket}/{spec.key} fails every read: {exc.detail}"
        outcome.evidence = exc.evidence
        return outcome
    if source.sha256 == spec.sha256:
        outcome.source_state = "ok"
    else:
        outcome.source_state = "corrupted"
        outcome.source_detail = (
            f"source {spec.source.bucket}/{spec.key} has SHA-256 {source.sha256[:12]}, the ledger says {spec.sha256[:12]}"
        )
        outcome.evidence = {"read_sha256": source.sha256, "ledger_sha256": spec.sha256, "read_size": source.size}
    return outcome


def verify_candidates(*, policy: BackupPolicy, mode: str, now: datetime, since: datetime | None = None) -> list[int]:
    """Ids of the ledger versions to verify now, oldest-verified first. With `since` (FULL
    mode), copies verified after it are skipped: written and checked by this run, or verified
    by it before it was interrupted."""
    if mode == VerifyMode.OFF:
        return []
    live = ObjectVersion.objects.filter(
        source__policy=policy, state__in=[VersionState.PROTECTED, VersionState.DAMAGED]
    ).exclude(backup_key="")
    ordered = live.order_by(F("verified_at").asc(nulls_first=True), "pk").values_list("pk", flat=True)
    if mode == VerifyMode.FULL:
        if since is not None:
            ordered = ordered.filter(Q(verified_at__isnull=True) | Q(verified_at__lt=since))
        return list(ordered)
    window = timedelta(days=policy.verify_within_days)
    interval = timedelta(minutes=policy.interval_minutes)
    runs_per_window = max(1, math.floor(window / interval))
    total = live.count()
    quota = math.ceil(total / runs_per_window)
    # Copies that would pass the limit before the next run must be read in this one.
    due = live.filter(Q(verified_at__isnull=True) | Q(verified_at__lt=now - window + interval * 2)).count()
    count = max(quota, due)
    return list(ordered[:count])


def _specs(ids: list[int], *, policy: BackupPolicy, check_source: bool) -> list[VerifySpec]:
    backup = destination_place(policy)
    sources: dict[int, storage.Place] = {}
    specs = []
    for v in ObjectVersion.objects.filter(pk__in=ids).select_related("source__endpoint").order_by("pk"):
        src = None
        if check_source and v.is_current:
            if v.source_id not in sources:
                sources[v.source_id] = source_place(v.source)
            src = sources[v.source_id]
        place = backup if v.backup_bucket == backup.bucket else storage.Place.resolve(target=backup.target, bucket=v.backup_bucket)
        specs.append(VerifySpec(v.pk, v.key, v.etag, v.size, v.sha256, place, v.backup_key, src, keys.dek_of(v)))
    return specs


def verify_outcomes_record(*, run: BackupRun, outcomes: list[VerifyOutcome]) -> None:
    from backups.services import backtrack

    now = timezone.now()
    ok = [o.spec.version_id for o in outcomes if o.backup_ok]
    source_ok = [o.spec.version_id for o in outcomes if o.backup_ok and o.source_state == "ok"]
    if ok:
        # A copy that reads back right is whole again, even if an earlier check failed.
        ObjectVersion.objects.filter(pk__in=ok).update(verified_at=now, state=VersionState.PROTECTED)
    if source_ok:
        ObjectVersion.objects.filter(pk__in=source_ok).update(source_verified_at=now)
    BackupRun.objects.filter(pk=run.pk).update(
        objects_verified=F("objects_verified") + len(outcomes),
        bytes_verified=F("bytes_verified") + sum(o.spec.size for o in outcomes),
        heartbeat_at=now,
    )
    versions = ObjectVersion.objects.in_bulk(
        [o.spec.version_id for o in outcomes if not o.backup_ok or o.source_state == "corrupted"]
    )
    handled: set[tuple[str, str]] = set()
    for o in outcomes:
        if not o.backup_ok:
            version = versions[o.spec.version_id]
            if o.cause == FailureCause.PERMISSION:
                logger.warning("verification of %s refused: %s", version.key, o.detail)
                continue
            # A copy shared by several versions is one finding (with every version as a
            # reference), even when its versions were read in different batches of this run.
            blob = (version.backup_bucket, version.backup_key)
            if blob in handled or Failure.objects.filter(
                run=run, failed_check=FailureCheck.VERIFY_BACKUP, version__backup_bucket=blob[0],
                version__backup_key=blob[1], created_at__gte=run.created_at,
            ).exists():
                continue
            handled.add(blob)
            backtrack.backup_damage_handle(run=run, version=version, cause=o.cause, detail=o.detail, evidence=o.evidence)
        elif o.source_state == "corrupted":
            backtrack.source_corruption_handle(
                run=run, version=versions[o.spec.version_id], detail=o.source_detail, evidence=o.evidence
            )


def run_verify(*, run: BackupRun, concurrency: int | None = None, now: datetime | None = None, on_batch=None) -> None:
    """Verify what the run's plan says, in parallel batches."""
    policy = run.policy
    mode = {RunVerify.FULL: VerifyMode.FULL, RunVerify.NONE: VerifyMode.OFF}.get(run.verify, policy.verify_mode)
    ids = verify_candidates(policy=policy, mode=mode, now=now or timezone.now(), since=run.created_at)
    started = time.monotonic()
    concurrency = max(1, concurrency or settings.BACKUP_VERIFY_CONCURRENCY)
    try:
        with ThreadPoolExecutor(concurrency, thread_name_prefix="backup-verify") as pool:
            previous: list = []
            # The next batch is in flight while the previous one is recorded.
            for start in range(0, len(ids), BATCH):
                specs = _specs(ids[start : start + BATCH], policy=policy, check_source=policy.verify_source)
                futures = [pool.submit(verify_one, spec) for spec in specs]
                if previous:
                    verify_outcomes_record(run=run, outcomes=[f.result() for f in previous])
                    if on_batch:
                        on_batch()
                previous = futures
            if previous:
                verify_outcomes_record(run=run, outcomes=[f.result() for f in previous])
                if on_batch:
                    on_batch()
    finally:
        BackupRun.objects.filter(pk=run.pk).update(verify_seconds=F("verify_seconds") + (time.monotonic() - started))
