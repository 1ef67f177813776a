"""Copy: claim tasks, move bytes in worker threads, record results in batches.

Every copy hashes the bytes as they pass (SHA-256 for the ledger, MD5 to check against the
listed ETag when it is a plain one) and writes them to a content-addressed key with
If-None-Match, so a copy never replaces another. Three ways, by size and place:

- small objects (<= BACKUP_INLINE_MAX_BYTES): one GET, one PUT;
- large objects on the same server (plain ETag): one GET to hash, then a server-side copy whose
  ETag must equal the MD5 we computed (no bytes uploaded by us);
- other large objects: streamed into a multipart upload at a staging key (each part's MD5
  checked), then copied server-side to the content address.

Tasks are claimed with a lease. A run killed mid-copy resumes where it stopped: finished
tasks are never redone, tasks held by a dead process are taken over, and a copy whose process
died between writing and recording finds its content already in place (deduplicated).
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.db.models.functions import Coalesce
from django.utils import timezone

from backups import crypto, storage
from backups.models import (
    BackupRun,
    CopyMethod,
    CopyTask,
    Encryption,
    Failure,
    FailureCause,
    ObjectVersion,
    Resolution,
    TaskState,
    VersionState,
)
from backups.services import keys, write_once
from backups.services.common import (
    destination_place,
    destination_prefix,
    owner_alive,
    rows_update,
    source_place,
)
from backups.services.sealed_copy import Sealed, copy_sealed
from core import s3

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CopySpec:
    """Everything a worker thread needs; no database rows cross into threads."""

    task_id: int
    version_id: int
    key: str
    etag: str
    size: int
    src: storage.Place
    dst: storage.Place
    dst_prefix: str
    inline_max: int
    attempts_before: int = 0
    kek: crypto.Kek | None = None  # set: the policy encrypts its copies client-side
    lock: tuple | None = None  # (S3 Object Lock mode, retain until) of every copy written
    s3_version_id: str = ""  # set on versioned sources: the exact version is read
    sse: bool = False  # ask the store to encrypt what it keeps (SSE-S3)


@dataclass
class CopyOutcome:
    spec: CopySpec
    ok: bool
    tries: int
    method: str = ""
    digest: s3.Digest | None = None
    backup_key: str = ""
    cause: str = ""
    detail: str = ""
    evidence: dict = field(default_factory=dict)
    # What a HEAD of the source said after the copy or the failure: {"etag", "size"} or {"missing": True}.
    source_now: dict | None = None
    changed_during_copy: bool = False
    sealed: Sealed | None = None


def _backoff(tries: int) -> float:
    return 0.2 * 4 ** (tries - 1)


def _source_now(spec: CopySpec) -> dict | None:
    try:
        found = storage.head(spec.src, spec.key)
    except storage.StorageError as exc:
        return {"error": exc.detail}
    if found is None:
        return {"missing": True}
    return {"etag": s3.etag_clean(found.get("ETag")), "size": int(found.get("ContentLength") or 0)}


def _is_same_version(spec: CopySpec, now: dict | None) -> bool:
    return bool(now) and now.get("etag") == spec.etag and now.get("size") == spec.size


def _pinned(spec: CopySpec) -> dict:
    return {"version_id": spec.s3_version_id} if spec.s3_version_id else {}


def _copy_attempt(spec: CopySpec) -> tuple[str, s3.Digest, str, Sealed | None]:
    """One try at copying; returns (method, digest, backup key, wrapped data key or None) or
    raises a StorageError."""
    if spec.kek is not None:
        return copy_sealed(spec)
    method, digest, key = _copy_plain(spec)
    return method, digest, key, None


def _copy_plain(spec: CopySpec) -> tuple[str, s3.Digest, str]:
    what = f"{spec.src.bucket}/{spec.key}"
    if spec.size <= spec.inline_max:
        data, digest = storage.read_all(spec.src, spec.key, if_match=spec.etag, source=True, **_pinned(spec))
        storage.check_against_listing(digest, etag=spec.etag, size=spec.size, what=what)
        key = storage.blob_key(spec.dst_prefix, digest.sha256)
        written = storage.put_once(spec.dst, key, data, md5=digest.md5, lock=spec.lock, sse=spec.sse)
        return (CopyMethod.INLINE if written else CopyMethod.DEDUPLICATED), digest, key

    if spec.src.same_server_as(spec.dst) and not s3.is_multipart_etag(spec.etag) and not spec.s3_version_id:
        digest = storage.read_digest(spec.src, spec.key, if_match=spec.etag, source=True)
        storage.check_against_listing(digest, etag=spec.etag, size=spec.size, what=what)
        key = storage.blob_key(spec.dst_prefix, digest.sha256)
        if storage.head(spec.dst, key) is not None:
            return CopyMethod.DEDUPLICATED, digest, key
        # If-Match pins the version we hashed; the copy's ETag must be the MD5 of those bytes.
        copied = storage.server_copy(
            spec.src, spec.key, spec.dst, key, size=spec.size, if_match=spec.etag, lock=spec.lock, sse=spec.sse
        )
        if copied != digest.md5:
            storage.delete(spec.dst, key)
            raise storage.TransferFailed(
                f"server copy of {what} has ETag {copied}, the bytes we hashed have MD5 {digest.md5}",
                evidence={"copy_etag": copied, "read_md5": digest.md5},
            )
        return CopyMethod.SERVER_COPY, digest, key

    staging = f"{spec.dst_prefix}staging/task-{spec.task_id}"
    digest, _ = storage.stream_upload(
        storage.stream(spec.src, spec.key, if_match=spec.etag, source=True, **_pinned(spec)),
        spec.dst,
        staging,
        size_hint=spec.size,
        accept=lambda d: storage.check_against_listing(d, etag=spec.etag, size=spec.size, what=what),
        sse=spec.sse,
    )
    try:
        key = storage.blob_key(spec.dst_prefix, digest.sha256)
        if storage.head(spec.dst, key) is not None:
            return CopyMethod.DEDUPLICATED, digest, key
        staged = storage.head(spec.dst, staging) or {}
        copied = storage.server_copy(spec.dst, staging, spec.dst, key, size=spec.size, lock=spec.lock, sse=spec.sse)
        # AWS gives a plain copy a fresh MD5 ETag; SeaweedFS keeps the staging object's.
        if copied not in (digest.md5, s3.etag_clean(staged.get("ETag"))):
            storage.delete(spec.dst, key)
            raise storage.TransferFailed(
                f"copy of the staged {what} has ETag {copied}", evidence={"copy_etag": copied, "read_md5": digest.md5}
            )
        return CopyMethod.STREAMED, digest, key
    finally:
        try:
            storage.delete(spec.dst, staging)
        except storage.StorageError:
            logger.warning("could not delete staging object %s", staging)


def _verdict(spec: CopySpec, exc: storage.StorageError, tries: int) -> tuple[str, dict | None] | None:
    """(cause, source_now) for a final failure, or None to try again."""
    last = tries >= settings.BACKUP_TASK_ATTEMPTS
    if isinstance(exc, storage.AccessDenied):
        return FailureCause.PERMISSION, None
    if isinstance(exc, storage.SourceChanged):
        return FailureCause.SOURCE_CHANGED, _source_now(spec)
    if isinstance(exc, storage.ContentMismatch):
        now = _source_now(spec)
        if not _is_same_version(spec, now):
            return FailureCause.SOURCE_CHANGED, now
        # Same ETag and size, yet the bytes do not match them: read again, then call it rot.
        return (FailureCause.SOURCE_CORRUPTED, now) if last else None
    if not last:
        return None
    if exc.side == "source" and exc.evidence.get("http_status", 0) and exc.evidence["http_status"] >= 500:
        now = _source_now(spec)
        if _is_same_version(spec, now):
            # The server answers for the metadata but fails every read of the data.
            return FailureCause.SOURCE_CORRUPTED, now
    return FailureCause.TRANSFER_ERROR, None


def copy_one(spec: CopySpec) -> CopyOutcome:
    """Copy one object version, retrying transient errors. Runs in a worker thread; never
    raises a StorageError (it becomes the outcome's cause)."""
    tries = 0
    attempts: list[str] = []
    while True:
        tries += 1
        try:
            method, digest, key, sealed = _copy_attempt(spec)
        except storage.StorageError as exc:
            attempts.append(exc.detail)
            verdict = _verdict(spec, exc, tries)
            if verdict is None:
                time.sleep(_backoff(tries))
                continue
            cause, now = verdict
            return CopyOutcome(
                spec=spec, ok=False, tries=tries, cause=cause, detail=exc.detail,
                evidence={**exc.evidence, "attempts": attempts}, source_now=now,
            )
        outcome = CopyOutcome(
            spec=spec, ok=True, tries=tries, method=method, digest=digest, backup_key=key, sealed=sealed
        )
        if not spec.s3_version_id and (spec.size > spec.inline_max or s3.is_multipart_etag(spec.etag)):
            # A long copy, or one whose ETag cannot prove the bytes: did the source change while
            # we read it? The copy still holds the version we listed, so it is kept either way.
            now = _source_now(spec)
            if now and "error" not in now and not _is_same_version(spec, now):
                outcome.changed_during_copy, outcome.source_now = True, now
        return outcome


# --------------------------------------------------------------------------- claiming


def _claimer_alive(owner: str, lease_until) -> bool:
    heartbeat = lease_until - timedelta(seconds=settings.BACKUP_LEASE_SECONDS) if lease_until else None
    return owner_alive(owner, heartbeat)


def tasks_reclaim(*, run: BackupRun) -> int:
    """Put back tasks held by processes that died (killed, machine lost)."""
    now = timezone.now()
    dead = [
        owner
        for owner, lease_until in CopyTask.objects.filter(run=run, state=TaskState.RUNNING)
        .values_list("claimed_by", "lease_until")
        .distinct()
        if not _claimer_alive(owner, lease_until) or (lease_until and lease_until < now)
    ]
    if not dead:
        return 0
    return CopyTask.objects.filter(run=run, state=TaskState.RUNNING, claimed_by__in=dead).update(
        state=TaskState.PENDING, claimed_by="", lease_until=None
    )


def tasks_release(*, run: BackupRun, owner: str) -> int:
    """Give back what `owner` holds (it is stopping without finishing them)."""
    return CopyTask.objects.filter(run=run, state=TaskState.RUNNING, claimed_by=owner).update(
        state=TaskState.PENDING, claimed_by="", lease_until=None
    )


class _Places:
    """Resolved places, once per run loop (credentials are read once, not per task)."""

    def __init__(self, run: BackupRun) -> None:
        self.dst = destination_place(run.policy)
        self.prefix = destination_prefix(run.policy)
        self.kek = keys.current_kek() if run.policy.encryption == Encryption.CLIENT else None
        policy = run.policy
        self.sse = policy.encryption == Encryption.SERVER
        self.lock = None
        if policy.lock_mode and policy.lock_days:
            self.lock = (policy.lock_mode, timezone.now() + timedelta(days=policy.lock_days))
        self._sources: dict[int, storage.Place] = {}

    def source(self, source) -> storage.Place:
        if source.pk not in self._sources:
            self._sources[source.pk] = source_place(source)
        return self._sources[source.pk]


def tasks_claim(*, run: BackupRun, owner: str, limit: int, places: _Places) -> list[CopySpec]:
    now = timezone.now()
    with transaction.atomic():
        pending = CopyTask.objects.filter(run=run, state=TaskState.PENDING).order_by("pk")
        if connection.features.has_select_for_update_skip_locked:
            pending = pending.select_for_update(skip_locked=True)
        ids = list(pending.values_list("pk", flat=True)[:limit])
        if not ids:
            return []
        CopyTask.objects.filter(pk__in=ids, state=TaskState.PENDING).update(
            state=TaskState.RUNNING, claimed_by=owner, started_at=Coalesce("started_at", now),
            lease_until=now + timedelta(seconds=settings.BACKUP_LEASE_SECONDS),
        )
        claimed = list(
            CopyTask.objects.filter(pk__in=ids, state=TaskState.RUNNING, claimed_by=owner).select_related(
                "version__source__endpoint"
            )
        )
    return [
        CopySpec(
            task_id=t.pk, version_id=t.version_id, key=t.version.key, etag=t.version.etag, size=t.version.size,
            src=places.source(t.version.source), dst=places.dst, dst_prefix=places.prefix,
            inline_max=settings.BACKUP_INLINE_MAX_BYTES, attempts_before=t.attempts, kek=places.kek, lock=places.lock,
            s3_version_id=t.version.version_id, sse=places.sse,
        )
        for t in claimed
    ]


# --------------------------------------------------------------------------- recording


def copy_outcomes_record(*, run: BackupRun, outcomes: list[CopyOutcome]) -> None:
    """Write a batch of results: ledger versions, tasks, run counters; failures are traced."""
    from backups.services import backtrack

    now = timezone.now()
    ok = [o for o in outcomes if o.ok]
    failed = [o for o in outcomes if not o.ok]
    with transaction.atomic():
        # A write we checked (ETag = MD5 of the bytes hashed) counts as verified; a copy that was
        # already there was not read by us, so it waits, never-verified, for the next verification.
        rows_update(
            ObjectVersion,
            ["sha256", "md5", "state", "backup_bucket", "backup_key", "copied_at", "verified_at", "copied_by",
             "kek_id", "wrapped_key"],
            [
                (o.spec.version_id, o.digest.sha256, o.digest.md5, VersionState.PROTECTED, o.spec.dst.bucket,
                 o.backup_key, now, None if o.method == CopyMethod.DEDUPLICATED else now, o.spec.task_id,
                 o.sealed.kek_id if o.sealed else "", o.sealed.wrapped_key if o.sealed else "")
                for o in ok
            ],
        )
        locked = [o for o in ok if o.spec.lock]
        if locked:
            _locks_record(locked)
        copied_bytes = {o.spec.task_id: 0 if o.method == CopyMethod.DEDUPLICATED else o.digest.size for o in ok}
        rows_update(
            CopyTask,
            ["state", "method", "sha256", "finished_at", "bytes_copied", "attempts", "error_cause", "error"],
            [
                (o.spec.task_id, TaskState.DONE, o.method, o.digest.sha256, now, copied_bytes[o.spec.task_id],
                 o.spec.attempts_before + o.tries, "", "")
                for o in ok
            ],
        )
        repaired = 0
        if ok:
            repaired = Failure.objects.filter(
                repair_task_id__in=[o.spec.task_id for o in ok], resolution=Resolution.OPEN
            ).update(resolution=Resolution.REPAIRED, resolved_at=now)
        BackupRun.objects.filter(pk=run.pk).update(
            objects_copied=F("objects_copied") + len(ok),
            bytes_copied=F("bytes_copied") + sum(copied_bytes.values()),
            objects_deduplicated=F("objects_deduplicated")
            + sum(1 for o in ok if o.method == CopyMethod.DEDUPLICATED),
            objects_repaired=F("objects_repaired") + repaired,
            heartbeat_at=now,
        )
        if ok:
            # New bytes of write-once keys: the same content takes over, other content is flagged.
            write_once.candidates_settle(run=run, version_ids=[o.spec.version_id for o in ok])
        changed = [o for o in ok if o.changed_during_copy]
        if changed:
            versions = ObjectVersion.objects.in_bulk([o.spec.version_id for o in changed])
            tasks = CopyTask.objects.in_bulk([o.spec.task_id for o in changed])
            for o in changed:
                backtrack.source_changed_during_copy(
                    run=run, version=versions[o.spec.version_id], task=tasks[o.spec.task_id], source_now=o.source_now
                )
    if failed:
        versions = ObjectVersion.objects.in_bulk([o.spec.version_id for o in failed])
        tasks = CopyTask.objects.in_bulk([o.spec.task_id for o in failed])
        for o in failed:
            backtrack.copy_failure_record(
                run=run, version=versions[o.spec.version_id], task=tasks[o.spec.task_id], outcome=o
            )


def _locks_record(outcomes: list[CopyOutcome]) -> None:
    """How long each copy is locked: what we wrote it with, or, for a copy that was already
    there, what the ledger knows of it (the store keeps the first write's lock)."""
    for o in outcomes:
        until = o.spec.lock[1]
        if o.method == CopyMethod.DEDUPLICATED:
            until = (
                ObjectVersion.objects.filter(backup_bucket=o.spec.dst.bucket, backup_key=o.backup_key, locked_until__isnull=False)
                .order_by("locked_until").values_list("locked_until", flat=True).first()
            )  # fmt: skip
        ObjectVersion.objects.filter(pk=o.spec.version_id).update(locked_until=until)


def _outstanding(run: BackupRun) -> bool:
    return CopyTask.objects.filter(run=run, state__in=[TaskState.PENDING, TaskState.RUNNING]).exists()


def run_copy(
    *, run: BackupRun, owner: str, concurrency: int | None = None, coordinator: bool = True, on_batch=None
) -> None:
    """Copy the run's tasks until none is left. The coordinator (the process driving the run)
    also waits for tasks other processes hold, and takes them over if those die."""
    concurrency = max(1, concurrency or settings.BACKUP_COPY_CONCURRENCY)
    places = _Places(run)
    lease = timedelta(seconds=settings.BACKUP_LEASE_SECONDS)
    if coordinator:
        tasks_reclaim(run=run)
        storage.stale_uploads_abort(places.dst, f"{places.prefix}staging/", older_than=timezone.now() - lease)
    started = time.monotonic()
    renewed = flushed = time.monotonic()
    results: list[CopyOutcome] = []
    inflight: dict = {}
    try:
        with ThreadPoolExecutor(concurrency, thread_name_prefix="backup-copy") as pool:
            while True:
                if len(inflight) <= concurrency * 2:
                    for spec in tasks_claim(run=run, owner=owner, limit=concurrency * 4 - len(inflight), places=places):
                        inflight[pool.submit(copy_one, spec)] = spec
                if not inflight:
                    if results:
                        copy_outcomes_record(run=run, outcomes=results)
                        results = []
                        continue  # recording may have queued follow-up tasks (restarts)
                    if coordinator and _outstanding(run):
                        time.sleep(1)
                        tasks_reclaim(run=run)
                        continue
                    break
                done, _ = wait(list(inflight), timeout=1.0, return_when=FIRST_COMPLETED)
                for future in done:
                    inflight.pop(future)
                    results.append(future.result())
                if results and (len(results) >= 200 or time.monotonic() - flushed > 0.5):
                    copy_outcomes_record(run=run, outcomes=results)
                    results, flushed = [], time.monotonic()
                    if on_batch:
                        on_batch()
                if time.monotonic() - renewed > 30:
                    now = timezone.now()
                    CopyTask.objects.filter(run=run, state=TaskState.RUNNING, claimed_by=owner).update(
                        lease_until=now + lease
                    )
                    BackupRun.objects.filter(pk=run.pk).update(heartbeat_at=now)
                    renewed = time.monotonic()
    finally:
        if results:
            copy_outcomes_record(run=run, outcomes=results)
        BackupRun.objects.filter(pk=run.pk).update(copy_seconds=F("copy_seconds") + (time.monotonic() - started))
