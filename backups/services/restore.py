"""Restore one object, a prefix, or everything of one asset, to its original place or another,
from the backup copies; each written object is read back and checked against the ledger's
SHA-256. A backup copy that does not hash right is never written anywhere.

An asset's objects are found through S3 keys and the shared event log only (backups does not
import the pipeline): its media under `assets/<id>/` and its published packages under
`published/<id>/` in the media bucket, and its source upload, whose key the pipeline's
`asset.created` event records.
"""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from backups import crypto, progress, storage
from backups.models import (
    BackupPolicy,
    ObjectVersion,
    Restore,
    RestoreItem,
    RestoreScope,
    RestoreState,
    StorageEndpoint,
    TaskState,
    VersionState,
)
from backups.services import keys
from backups.services.common import destination_place, process_label, source_place
from backups.services.rewrite import blob_rewrite
from backups.services.scan import key_prefix_filter
from core.models import Event
from core.services import event_record

logger = logging.getLogger(__name__)

# An asset's objects in the media bucket: its renditions and working outputs, and its
# published packages (everything a viewer needs).
ASSET_MEDIA_PREFIXES = ("assets/{asset_id}/", "published/{asset_id}/")
RESTORABLE = (VersionState.PROTECTED, VersionState.DAMAGED)


class RestoreRejected(ValueError):
    """The request cannot be carried out as asked (the message says why, for the form)."""


def asset_source_key(asset_id: int) -> str | None:
    """The ingest key of an asset's upload, from the pipeline's `asset.created` event."""
    event = (
        Event.objects.filter(type="asset.created", subject_type="pipeline.asset", subject_id=str(asset_id))
        .order_by("-id")
        .values_list("payload", flat=True)
        .first()
    )
    return (event or {}).get("key")


def _candidates(*, policy: BackupPolicy, scope: str, selector: str):
    # A version that overwrote a write-once object is evidence, never what a restore brings back.
    base = ObjectVersion.objects.filter(source__policy=policy, tampered_at__isnull=True)
    if scope == RestoreScope.PREFIX:
        return key_prefix_filter(base, selector)
    if scope == RestoreScope.ASSET:
        sources = list(policy.sources.all())
        media = [s.pk for s in sources if storage.bucket_resolve(s.bucket) == settings.S3_BUCKET_MEDIA]
        ingest = [s.pk for s in sources if storage.bucket_resolve(s.bucket) == settings.S3_BUCKET_INGEST]
        ids = []
        for pattern in ASSET_MEDIA_PREFIXES:
            prefix = pattern.format(asset_id=int(selector))
            ids += list(key_prefix_filter(base.filter(source_id__in=media), prefix).values_list("pk", flat=True))
        upload = asset_source_key(int(selector))
        if upload:
            ids += list(base.filter(source_id__in=ingest, key=upload).values_list("pk", flat=True))
        return ObjectVersion.objects.filter(pk__in=ids)
    return base.filter(key=selector)


def versions_for_restore(
    *, policy: BackupPolicy, scope: str, selector: str, as_of: datetime | None = None, version_label: str = ""
) -> list[ObjectVersion]:
    """One version per (source, key): the one named by `version_label` (S3 version id or
    ETag), else the one current at `as_of`, or else the newest (for a deleted object, its last
    version)."""
    chosen: dict[tuple[int, str], ObjectVersion] = {}
    unusable: dict[tuple[int, str], ObjectVersion] = {}
    qs = _candidates(policy=policy, scope=scope, selector=selector)
    if version_label:
        qs, as_of = qs.filter(Q(version_id=version_label) | Q(etag=version_label)), None
    qs = qs.select_related("source").order_by("source_id", "key", "-first_seen_at", "-pk")
    for version in qs.iterator(chunk_size=1000):
        ident = (version.source_id, version.key)
        if ident in chosen:
            continue
        if as_of is not None:
            ended = version.superseded_at or version.deleted_at
            if version.first_seen_at > as_of or (ended is not None and ended <= as_of):
                continue
        if version.state in RESTORABLE:
            chosen[ident] = version
        else:
            # Look further back for a version with a copy, but remember this one to say why.
            unusable.setdefault(ident, version)
    return list(chosen.values()) + [v for ident, v in unusable.items() if ident not in chosen]


def _validate(*, scope: str, selector: str, target_bucket: str, target_prefix: str, version_label: str = "") -> str:
    selector = selector.strip()
    if version_label and scope != RestoreScope.OBJECT:
        raise RestoreRejected("A version can only be named when restoring one object.")
    if scope not in RestoreScope.values:
        raise RestoreRejected(f"Unknown scope {scope!r}.")
    if not selector and scope != RestoreScope.PREFIX:
        raise RestoreRejected("Say which object or asset to restore.")
    if scope == RestoreScope.ASSET and not selector.isdigit():
        raise RestoreRejected("An asset is named by its number, e.g. 42.")
    if target_prefix and not target_bucket:
        raise RestoreRejected("A target prefix needs a target bucket.")
    return selector


@transaction.atomic
def restore_create(
    *, policy: BackupPolicy, scope: str, selector: str, as_of: datetime | None = None,
    target_endpoint: StorageEndpoint | None = None, target_bucket: str = "", target_prefix: str = "",
    actor=None, enqueue: bool = False, version_label: str = "",
) -> Restore:
    """Plan a restore (one item per object). RestoreRejected when nothing matches."""
    version_label = version_label.strip()
    selector = _validate(
        scope=scope, selector=selector, target_bucket=target_bucket, target_prefix=target_prefix, version_label=version_label
    )
    versions = versions_for_restore(
        policy=policy, scope=scope, selector=selector, as_of=as_of, version_label=version_label
    )
    if not versions:
        when = f" as of {as_of:%Y-%m-%d %H:%M} UTC" if as_of else ""
        when = f" in version {version_label}" if version_label else when
        raise RestoreRejected(f"No backed-up object of policy {policy.name} matches {scope} {selector!r}{when}.")
    restore = Restore.objects.create(
        policy=policy, scope=scope, selector=selector, as_of=as_of, version_label=version_label,
        target_endpoint=target_endpoint,
        target_bucket=target_bucket.strip(), target_prefix=target_prefix.strip(), objects_total=len(versions),
        requested_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    items = []
    for v in versions:
        bucket = restore.target_bucket or storage.bucket_resolve(v.source.bucket)
        key = f"{restore.target_prefix}{v.key}" if restore.target_bucket else v.key
        item = RestoreItem(restore=restore, version=v, key=v.key, target_bucket=bucket, target_key=key, size=v.size)
        if v.state not in RESTORABLE:
            item.state, item.error = TaskState.FAILED, f"no good backup copy of this version ({v.get_state_display()})"
            item.finished_at = timezone.now()
        items.append(item)
    RestoreItem.objects.bulk_create(items)
    failed = sum(1 for i in items if i.state == TaskState.FAILED)
    if failed:
        Restore.objects.filter(pk=restore.pk).update(objects_failed=failed)
    event_record(
        type="backup.restore.requested", subject=restore, actor=actor, actor_label="backups",
        payload={"policy": policy.name, "scope": scope, "selector": selector, "objects": len(items),
                 "target": f"{target_bucket}/{target_prefix}" if target_bucket else "original place"},
    )
    if enqueue:
        restore_id = restore.pk

        def go() -> None:
            from backups import jobs

            jobs.restore_enqueue(restore_id)

        transaction.on_commit(go)
    return restore


@dataclass(frozen=True)
class _ItemSpec:
    item_id: int
    backup: storage.Place
    backup_key: str
    sha256: str
    size: int
    target: storage.Place
    target_key: str
    dek: bytes | None = None


def _restore_one(spec: _ItemSpec) -> tuple[int, str]:
    """Runs in a worker thread; returns (item id, error or "")."""
    try:
        blob_rewrite(
            origin=spec.backup, origin_key=spec.backup_key, if_match=None, expected_sha=spec.sha256,
            size=spec.size, target=spec.target, target_key=spec.target_key, origin_dek=spec.dek,
        )
    except storage.ContentMismatch as exc:
        return spec.item_id, f"the backup copy is damaged, nothing was written ({exc.detail}); run a verification to repair it"
    except storage.StorageError as exc:
        return spec.item_id, exc.detail
    return spec.item_id, ""


def _item_specs(restore: Restore) -> list[_ItemSpec]:
    backup = destination_place(restore.policy)
    override = storage.endpoint_target(restore.target_endpoint) if restore.target_endpoint else None
    specs = []
    for item in restore.items.filter(state=TaskState.PENDING).select_related("version__source__endpoint"):
        v = item.version
        target = override or source_place(v.source).target
        specs.append(
            _ItemSpec(
                item_id=item.pk,
                backup=storage.Place.resolve(target=backup.target, bucket=v.backup_bucket or backup.bucket),
                backup_key=v.backup_key, sha256=v.sha256, size=v.size,
                target=storage.Place.resolve(target=target, bucket=item.target_bucket), target_key=item.target_key,
                dek=keys.dek_of(v),
            )
        )
    return specs


def restore_execute(*, restore_id: int, concurrency: int | None = None) -> Restore | None:
    """Carry out a restore's pending items; idempotent (done items are not redone)."""
    with transaction.atomic():
        restore = Restore.objects.select_for_update(of=("self",)).select_related("policy", "target_endpoint").get(pk=restore_id)
        if restore.finished_at is not None:
            return restore
        restore.state, restore.started_at = RestoreState.RUNNING, restore.started_at or timezone.now()
        restore.save(update_fields=["state", "started_at"])
    publisher = progress.Publisher("restore", restore.pk)
    publisher.maybe(force=True)
    try:
        specs = _item_specs(restore)
    except (storage.StorageError, keys.KeysUnusable, crypto.KeyError_) as exc:
        detail = getattr(exc, "detail", str(exc))
        Restore.objects.filter(pk=restore.pk).update(error=detail[:2000])
        RestoreItem.objects.filter(restore=restore, state=TaskState.PENDING).update(
            state=TaskState.FAILED, error=detail[:500], finished_at=timezone.now()
        )
        Restore.objects.filter(pk=restore.pk).update(objects_failed=restore.items.filter(state=TaskState.FAILED).count())
        return restore_finish(restore_id=restore.pk)
    by_id = {s.item_id: s for s in specs}
    with ThreadPoolExecutor(max(1, concurrency or settings.BACKUP_COPY_CONCURRENCY)) as pool:
        for item_id, error in pool.map(_restore_one, specs):
            now = timezone.now()
            if error:
                RestoreItem.objects.filter(pk=item_id).update(state=TaskState.FAILED, error=error[:500], finished_at=now)
                Restore.objects.filter(pk=restore.pk).update(objects_failed=F("objects_failed") + 1)
            else:
                RestoreItem.objects.filter(pk=item_id).update(
                    state=TaskState.DONE, sha256_written=by_id[item_id].sha256, finished_at=now
                )
                Restore.objects.filter(pk=restore.pk).update(
                    objects_done=F("objects_done") + 1, bytes_restored=F("bytes_restored") + by_id[item_id].size
                )
            publisher.maybe()
    return restore_finish(restore_id=restore.pk)


@transaction.atomic
def restore_finish(*, restore_id: int) -> Restore:
    restore = Restore.objects.select_for_update().select_related("policy").get(pk=restore_id)
    if restore.objects_failed == 0:
        restore.state = RestoreState.SUCCEEDED
    elif restore.objects_done:
        restore.state = RestoreState.PARTIAL
    else:
        restore.state = RestoreState.FAILED
    restore.finished_at = timezone.now()
    restore.save(update_fields=["state", "finished_at"])
    event_record(
        type="backup.restore.finished", subject=restore, actor_label=process_label(),
        payload={"state": restore.state, "done": restore.objects_done, "failed": restore.objects_failed,
                 "bytes": restore.bytes_restored},
    )
    transaction.on_commit(lambda: progress.Publisher("restore", restore.pk).maybe(force=True))
    return restore
