"""Change detection on versioned sources: ListObjectVersions instead of the current listing,
so every version written between two sweeps is recorded and copied (not only the last one).

A ledger version of a versioned source carries its S3 version id; its time is the store's
LastModified (first seen = written; superseded = when the next version was written), so
`restore --as-of` can bring back any version. Copies read the exact version (VersionId). A
version that is gone before it could be copied (deleted by version id) is recorded as missed,
with an alert: it can never be copied.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from backups.models import BackupRun, CopyTask, ObjectVersion, PolicySource, VersionState
from backups.services.common import alert_for, key_digest, rows_insert
from core import s3
from core.models import AlertSeverity


def _is_folder_marker(entry: dict) -> bool:
    return entry["Key"].endswith("/") and not entry.get("Size")


def _key_record(group: list[dict], *, run: BackupRun, source: PolicySource, known: dict, current: dict, acc: dict) -> None:
    """One key's versions (newest first) against the ledger; what to write goes into `acc`."""
    key = group[0]["Key"]
    latest = next((e for e in group if e.get("IsLatest")), group[0])
    newer_written = None  # when the next newer version (or delete marker) was written
    for entry in group:
        if entry.get("DeleteMarker"):
            newer_written = entry["LastModified"]
            continue
        version_id, is_latest = entry.get("VersionId") or "", entry is latest
        etag, size = s3.etag_clean(entry.get("ETag")), int(entry.get("Size") or 0)
        acc["counts"]["objects_scanned"] += 1
        acc["counts"]["bytes_scanned"] += size
        row = known.get((key, version_id))
        if row is not None:
            if is_latest:
                acc["seen"].append(row["id"])
                if not row["is_current"]:  # a newer version was deleted: this one is current again
                    acc["promote"].append((row["id"], current.get(key)))
            if row["state"] == VersionState.PENDING:
                acc["retry"].append(row["id"])  # an earlier copy failed: try again in this run
            newer_written = entry["LastModified"]
            continue
        if is_latest and key in current:
            acc["superseded"].append((current[key]["id"], entry["LastModified"]))
        acc["counts"]["objects_new" if is_latest and key not in current else "objects_changed"] += 1
        acc["rows"].append({
            "source_id": source.pk, "key": key, "etag": etag, "size": size, "version_id": version_id,
            "source_modified_at": entry["LastModified"], "first_seen_at": entry["LastModified"],
            "is_current": is_latest, "superseded_at": None if is_latest else newer_written,
            "first_seen_run_id": run.pk, "last_seen_run_id": run.pk,
        })  # fmt: skip
        newer_written = entry["LastModified"]


def versions_page_record(*, run: BackupRun, source: PolicySource, groups: list[list[dict]], cursor: dict) -> dict:
    """Record one page of whole keys' versions; returns the counts it added."""
    groups = [g for g in groups if not _is_folder_marker(g[0])]
    keys = [g[0]["Key"] for g in groups]
    known, current = {}, {}
    for row in ObjectVersion.objects.filter(source=source, key__in=keys).values(
        "id", "key", "version_id", "state", "is_current"
    ):
        known[(row["key"], row["version_id"])] = row
        if row["is_current"]:
            current[row["key"]] = row
    acc = {"rows": [], "superseded": [], "promote": [], "seen": [], "retry": [],
           "counts": {"objects_scanned": 0, "bytes_scanned": 0, "objects_new": 0, "objects_changed": 0}}  # fmt: skip
    for group in groups:
        _key_record(group, run=run, source=source, known=known, current=current, acc=acc)
    now = timezone.now()
    with transaction.atomic():
        for pk, when in acc["superseded"]:  # before the inserts: one current version per key
            ObjectVersion.objects.filter(pk=pk).update(is_current=False, superseded_at=when)
        for pk, demoted in acc["promote"]:
            if demoted is not None:
                ObjectVersion.objects.filter(pk=demoted["id"]).update(is_current=False, superseded_at=now)
            ObjectVersion.objects.filter(pk=pk).update(is_current=True, superseded_at=None, deleted_at=None)
        rows_insert(ObjectVersion, acc["rows"])
        created = []
        if acc["rows"]:
            created = list(
                ObjectVersion.objects.filter(
                    source=source, first_seen_run=run, key__in={r["key"] for r in acc["rows"]},
                    version_id__in={r["version_id"] for r in acc["rows"]}, state=VersionState.PENDING,
                ).exclude(tasks__run=run).values_list("pk", flat=True)
            )
        if acc["seen"]:
            ObjectVersion.objects.filter(pk__in=acc["seen"]).update(last_seen_run=run)
        rows_insert(CopyTask, [{"run_id": run.pk, "version_id": pk, "created_at": now} for pk in created + acc["retry"]])
        BackupRun.objects.filter(pk=run.pk).update(
            scan_cursor=cursor, heartbeat_at=now, **{name: F(name) + value for name, value in acc["counts"].items()}
        )
    return acc["counts"]


def version_missed_record(*, run: BackupRun, version: ObjectVersion, detail: str):
    """A version of a versioned source disappeared before it was copied: it can never be."""
    ObjectVersion.objects.filter(pk=version.pk, state=VersionState.PENDING).update(state=VersionState.VANISHED)
    return alert_for(
        policy=run.policy, severity=AlertSeverity.WARNING, title=f"Version missed: {version.key}",
        detail=f"version {version.version_id} of {version.key} (written {version.first_seen_at:%Y-%m-%d %H:%M:%S} UTC) "
        f"was deleted from the source before it could be copied: {detail}",
        dedup=f"missed:{version.source_id}:{key_digest(version.key + version.version_id)}", subject=version,
        evidence={"run": run.pk, "version_id": version.version_id},
    )
