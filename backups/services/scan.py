"""Needs-backup detection: compare a streamed listing of each source with the ledger.

One page of the listing at a time (never the whole listing in memory): the page's current
ledger rows are loaded in one query, new and changed objects get a ledger version and a copy
task, unchanged ones are stamped as seen by this run. The page and the scan cursor are
committed together, so a run killed mid-scan continues after the last committed page. When a
source prefix is done, current versions this run did not see were deleted from the source.

Change means a different ETag or size. ETags are only ever compared with ETags here: a
multipart ETag is never taken for an MD5.
"""

import logging
import queue
import threading
import time
from collections.abc import Iterator

from django.db import transaction
from django.db.models import F
from django.db.models.functions import Left
from django.utils import timezone

from backups import s3features, storage
from backups.models import BackupRun, CopyTask, ObjectVersion, PolicySource, TaskState, VersionState
from backups.services import scan_versions, write_once
from backups.services.common import rows_insert, source_place
from core import s3

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000


def key_prefix_filter(queryset, prefix: str):
    """Rows whose key starts with `prefix`, case-sensitively on every database (SQLite's LIKE
    ignores case, so `key__startswith` could match another object)."""
    if not prefix:
        return queryset
    return queryset.annotate(_key_head=Left("key", len(prefix))).filter(_key_head=prefix)


def _prefetched(pages: Iterator[list[dict]]) -> Iterator[list[dict]]:
    """Fetch the next listing page while the caller records this one (the listing and the
    database work overlap, so a sweep runs at nearly the listing's own rate)."""
    handoff: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    done = object()

    def hand(item) -> bool:
        while not stop.is_set():
            try:
                handoff.put(item, timeout=0.5)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for page in pages:
                if not hand(page):
                    return
            hand(done)
        except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
            hand(exc)

    thread = threading.Thread(target=produce, name="backup-listing", daemon=True)
    thread.start()
    try:
        while True:
            item = handoff.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()


def scan_parts(run: BackupRun) -> list[tuple[PolicySource, str]]:
    """(source, prefix) pairs this run scans: its scope, or every source of its policy."""
    sources = {s.pk: s for s in run.policy.sources.select_related("endpoint").order_by("pk")}
    if run.scope:
        return [(sources[item["source"]], item["prefix"]) for item in run.scope if item["source"] in sources]
    return [(source, source.prefix) for source in sources.values()]


def _is_folder_marker(obj: dict) -> bool:
    return obj["Key"].endswith("/") and not obj.get("Size")


def _inserted(*, run: BackupRun, source: PolicySource, new_versions: list[dict]) -> list[int]:
    """Ids of the versions just inserted: new current ones, and write-once candidates held
    beside the current version (their copy decides, write_once.py)."""
    created = list(
        ObjectVersion.objects.filter(
            source=source, is_current=True, key__in=[v["key"] for v in new_versions if v.get("is_current", True)]
        ).values_list("pk", flat=True)
    )
    held = [v["key"] for v in new_versions if not v.get("is_current", True)]
    if held:
        created += list(
            ObjectVersion.objects.filter(
                source=source, key__in=held, first_seen_run=run, overwrites__isnull=False, state=VersionState.PENDING
            ).exclude(tasks__run=run).values_list("pk", flat=True)
        )
    return created


def scan_page_record(*, run: BackupRun, source: PolicySource, page: list[dict], cursor: dict) -> dict:
    """Record one listing page against the ledger; returns the counts it added."""
    objects = [o for o in page if not _is_folder_marker(o)]
    keys = [o["Key"] for o in objects]
    current = {
        row["key"]: row
        for row in ObjectVersion.objects.filter(source=source, is_current=True, key__in=keys).values(
            "id", "key", "etag", "size", "state"
        )
    }
    now = timezone.now()
    globs = write_once.patterns(source)
    # Changed keys that are written once: their new bytes wait beside the protected version.
    guarded = [
        o["Key"] for o in objects
        if globs and o["Key"] in current and current[o["Key"]]["state"] == VersionState.PROTECTED
        and write_once.is_write_once(globs, o["Key"])
    ]  # fmt: skip
    known = write_once.candidates_known(source=source, keys=guarded) if guarded else {}
    new_versions: list[dict] = []
    superseded: list[int] = []
    seen: list[int] = []
    retry: list[int] = []
    counts = {"objects_scanned": 0, "bytes_scanned": 0, "objects_new": 0, "objects_changed": 0}
    for obj in objects:
        etag, size = s3.etag_clean(obj.get("ETag")), int(obj.get("Size") or 0)
        counts["objects_scanned"] += 1
        counts["bytes_scanned"] += size
        row = current.get(obj["Key"])
        if row is not None and row["etag"] == etag and row["size"] == size:
            seen.append(row["id"])
            if row["state"] == VersionState.PENDING:
                retry.append(row["id"])  # an earlier copy failed: try again in this run
            continue
        version = {"source_id": source.pk, "key": obj["Key"], "etag": etag, "size": size,
                   "source_modified_at": obj.get("LastModified"), "first_seen_run_id": run.pk,
                   "last_seen_run_id": run.pk, "first_seen_at": now}  # fmt: skip
        if row is None:
            counts["objects_new"] += 1
        elif obj["Key"] in guarded:
            seen.append(row["id"])  # still the current version
            earlier = next((c for c in known.get(obj["Key"], []) if c["etag"] == etag and c["size"] == size), None)
            if earlier is None:
                counts["objects_changed"] += 1
                version.update(is_current=False, overwrites_id=row["id"])
            elif earlier["state"] == VersionState.PENDING:
                retry.append(earlier["id"])  # flagged already, or its copy failed: nothing new
                continue
            else:
                continue
        else:
            counts["objects_changed"] += 1
            superseded.append(row["id"])
        new_versions.append(version)
    with transaction.atomic():
        if superseded:
            # Before the insert: at most one current version per key.
            ObjectVersion.objects.filter(pk__in=superseded).update(is_current=False, superseded_at=now)
        rows_insert(ObjectVersion, new_versions)
        created = _inserted(run=run, source=source, new_versions=new_versions) if new_versions else []
        if seen:
            ObjectVersion.objects.filter(pk__in=seen).update(last_seen_run=run)
        rows_insert(CopyTask, [{"run_id": run.pk, "version_id": pk, "created_at": now} for pk in created + retry])
        BackupRun.objects.filter(pk=run.pk).update(
            scan_cursor=cursor, heartbeat_at=now, **{name: F(name) + value for name, value in counts.items()}
        )
    return counts


def deletions_record(*, run: BackupRun, source: PolicySource, prefix: str) -> int:
    """Current versions under `prefix` that this run's listing did not contain were deleted."""
    now = timezone.now()
    gone = key_prefix_filter(ObjectVersion.objects.filter(source=source, is_current=True), prefix).exclude(
        last_seen_run=run
    )
    with transaction.atomic():
        ids = list(gone.values_list("pk", flat=True))
        if ids:
            ObjectVersion.objects.filter(pk__in=ids).update(is_current=False, deleted_at=now)
            # A version deleted before it was ever copied cannot be copied any more.
            ObjectVersion.objects.filter(pk__in=ids, state=VersionState.PENDING).update(state=VersionState.VANISHED)
            CopyTask.objects.filter(run=run, version_id__in=ids, state=TaskState.PENDING).update(
                state=TaskState.SKIPPED, finished_at=now, error="deleted from the source"
            )
            BackupRun.objects.filter(pk=run.pk).update(objects_deleted=F("objects_deleted") + len(ids))
    return len(ids)


def _versioned(place: storage.Place) -> bool:
    try:
        return s3features.versioning_enabled(place)
    except storage.StorageError:
        return False  # a store without the versioning API: its listing is the current objects


def run_scan(*, run: BackupRun, page_size: int = PAGE_SIZE, on_page=None) -> None:
    """Scan every part of the run from its cursor; the cursor moves with each committed page."""
    parts = scan_parts(run)
    started = time.monotonic()
    cursor = run.scan_cursor or {}
    first_part = int(cursor.get("part", 0))
    for index in range(first_part, len(parts)):
        source, prefix = parts[index]
        after = cursor.get("after", "") if index == first_part else ""
        place = source_place(source)
        if _versioned(place):
            # Every version written since the last sweep, not only the latest (scan_versions.py).
            pages = s3features.list_version_pages(place, prefix, after=after, page_size=page_size)
            for groups in _prefetched(pages):
                scan_versions.versions_page_record(
                    run=run, source=source, groups=groups, cursor={"part": index, "after": groups[-1][0]["Key"]}
                )
                if on_page:
                    on_page()
        else:
            for page in _prefetched(storage.list_pages(place, prefix, start_after=after, page_size=page_size)):
                scan_page_record(run=run, source=source, page=page, cursor={"part": index, "after": page[-1]["Key"]})
                if on_page:
                    on_page()
        deletions_record(run=run, source=source, prefix=prefix)
        BackupRun.objects.filter(pk=run.pk).update(scan_cursor={"part": index + 1, "after": ""})
    BackupRun.objects.filter(pk=run.pk).update(scan_seconds=F("scan_seconds") + (time.monotonic() - started))
