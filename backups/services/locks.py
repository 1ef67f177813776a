"""S3 Object Lock: whether a policy's destination supports it, legal holds set from the page,
and deletes the store refused (a locked copy) recorded as findings.

Copies of a policy with `lock_mode` and `lock_days` are written with that retention (copying.py);
the ledger keeps `locked_until` and `legal_hold`, and retention never forgets a version before
either lets it go (retention.py).
"""

from __future__ import annotations

from django.db import transaction

from backups import s3features, storage
from backups.models import BackupPolicy, BackupRun, FailureCause, FailureCheck, ObjectVersion, Resolution
from backups.services.backtrack import _failure_create, _step
from backups.services.common import alert_for, destination_place, key_digest
from core.models import AlertSeverity
from core.services import event_record


def lock_support(policy: BackupPolicy) -> tuple[bool, str]:
    """(supported, a sentence for the policy page)."""
    try:
        place = destination_place(policy)
        enabled = s3features.lock_enabled(place)
    except storage.StorageError as exc:
        return False, f"Could not ask the destination about Object Lock: {exc.detail}"
    if enabled:
        return True, f"Bucket {place.bucket} has S3 Object Lock enabled: copies can be locked and held."
    return False, (
        f"Bucket {place.bucket} does not have S3 Object Lock enabled (it can only be enabled when a bucket is "
        "created): copies are not immutable, and a legal hold cannot be set."
    )


class HoldRefused(Exception):
    pass


@transaction.atomic
def legal_hold_set(*, version: ObjectVersion, on: bool, actor=None) -> int:
    """Set or clear the legal hold on a version's copy (and every version sharing it);
    returns how many ledger versions it covers."""
    if not version.backup_key:
        raise HoldRefused(f"{version.key} version {version.version_label} has no backup copy to hold")
    policy = version.source.policy
    try:
        s3features.legal_hold_put(storage.Place.resolve(target=destination_place(policy).target, bucket=version.backup_bucket),
                               version.backup_key, on=on)  # fmt: skip
    except storage.StorageError as exc:
        raise HoldRefused(f"the store refused the legal hold: {exc.detail}") from None
    covered = ObjectVersion.objects.filter(backup_bucket=version.backup_bucket, backup_key=version.backup_key)
    count = covered.update(legal_hold=on)
    event_record(
        type="backup.legal_hold." + ("set" if on else "cleared"), subject=version, actor=actor, actor_label="backups",
        payload={"policy": policy.name, "key": version.key, "copy": version.backup_key, "versions": count},
    )
    return count


def delete_refused_record(*, run: BackupRun, bucket: str, key: str, detail: str):
    """Retention tried to delete a copy the store keeps locked: a finding, not a log line."""
    policy = run.policy
    chain = [
        _step("Retention", f"deleting {bucket}/{key} was refused: {detail}"),
        _step("Root cause", "the copy is under S3 Object Lock (retention or legal hold) in the store, although the "
              "ledger let it go: the store keeps it, as it must"),  # fmt: skip
    ]
    alert = alert_for(
        policy=policy, severity=AlertSeverity.WARNING, title=f"Delete refused by the store: {key}", detail=detail,
        dedup=f"{FailureCause.DELETE_REFUSED}:{key_digest(bucket + '/' + key)}", evidence={"run": run.pk, "key": key},
    )
    failure = _failure_create(
        run=run, version=None, task=None, failed_check=FailureCheck.RETENTION, cause=FailureCause.DELETE_REFUSED,
        detail=f"{bucket}/{key}: {detail}", chain=chain, resolution=Resolution.ALERTED,
        action="the locked copy stays; it is deleted by a later run once its lock has passed", alert=alert,
    )
    failure.key = key
    failure.save(update_fields=["key"])
    return failure
