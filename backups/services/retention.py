"""Retention: forget superseded and deleted versions older than the policy keeps them, and
delete their backup copies once no remaining ledger version refers to the same bytes."""

import logging
from datetime import timedelta

from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from backups import storage
from backups.models import BackupRun, Failure, LegalHold, ObjectVersion, ScanRequest
from backups.services.common import destination_place

logger = logging.getLogger(__name__)

BATCH = 500


def _without_held(versions, policy):
    """Versions under an active legal hold stay, whatever their age."""
    holds = list(LegalHold.objects.filter(released_at__isnull=True).values_list("bucket", "prefix"))
    for source in policy.sources.all() if holds else []:
        bucket = storage.bucket_resolve(source.bucket)
        for held_bucket, prefix in holds:
            if held_bucket == bucket:
                versions = versions.exclude(source=source, key__startswith=prefix)
    return versions


def run_prune(*, run: BackupRun, now=None) -> int:
    """Returns how many ledger versions were pruned."""
    policy = run.policy
    now = now or timezone.now()
    cutoff = now - timedelta(days=policy.retention_days)
    expired = ObjectVersion.objects.filter(source__policy=policy, is_current=False).filter(
        Q(deleted_at__lt=cutoff) | Q(superseded_at__lt=cutoff)
    )
    expired = _without_held(expired, policy)
    dst = destination_place(policy)
    pruned = 0
    while True:
        batch = list(expired.values_list("pk", "backup_bucket", "backup_key")[:BATCH])
        if not batch:
            break
        ids = [pk for pk, _, _ in batch]
        blobs = {(bucket, key) for _, bucket, key in batch if key}
        with transaction.atomic():
            Failure.objects.filter(version_id__in=ids).update(version=None)
            ObjectVersion.objects.filter(pk__in=ids).delete()
        still_used = set(
            ObjectVersion.objects.filter(backup_key__in=[key for _, key in blobs]).values_list("backup_bucket", "backup_key")
        )
        for bucket, key in blobs - still_used:
            try:
                storage.delete(storage.Place.resolve(target=dst.target, bucket=bucket), key)
            except storage.StorageError as exc:
                # The ledger no longer points at it; a leftover copy costs space, not safety.
                logger.warning("retention could not delete %s/%s: %s", bucket, key, exc.detail)
        pruned += len(ids)
    ScanRequest.objects.filter(policy=policy, taken_by__isnull=False, created_at__lt=cutoff).delete()
    BackupRun.objects.filter(pk=run.pk).update(versions_pruned=F("versions_pruned") + pruned)
    return pruned
