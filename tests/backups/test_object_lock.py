"""S3 Object Lock on a real SeaweedFS bucket created with Object Lock enabled (SeaweedFS 4.48
implements it: retention and legal hold, and refuses to delete a locked version): copies are
written locked, the store refuses to delete them, a refused delete is a finding, and a legal
hold is set from the policy page."""

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from django.test import Client
from django.urls import reverse

from backups import storage
from backups.models import FailureCause, LockMode, ObjectVersion, Resolution, RunState
from backups.services.common import destination_place
from core.models import Event
from core.roles import Role
from tests.backups.conftest import run_policy

pytestmark = pytest.mark.django_db

LOCKED_BUCKET = "offsite-locked"


@pytest.fixture
def locked_bucket(offsite):
    try:
        offsite.create_bucket(Bucket=LOCKED_BUCKET, ObjectLockEnabledForBucket=True)
    except ClientError as exc:
        if exc.response["Error"]["Code"] not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
            raise
    return LOCKED_BUCKET


@pytest.fixture
def locked(make_policy, put, tag, locked_bucket, offsite):
    policy = make_policy(destination_bucket=locked_bucket, lock_mode=LockMode.GOVERNANCE, lock_days=1)
    key = put(f"uploads/t{tag}/evidence.bin", b"first version " * 100)
    assert run_policy(policy).state == RunState.SUCCEEDED
    return policy, key, ObjectVersion.objects.get(source__policy=policy, key=key)


def test_copies_are_written_locked_and_the_store_refuses_to_delete_them(locked, offsite):
    policy, _, version = locked
    stored = offsite.head_object(Bucket=LOCKED_BUCKET, Key=version.backup_key)
    assert stored["ObjectLockMode"] == "GOVERNANCE"
    assert stored["ObjectLockRetainUntilDate"] > datetime.now(tz=UTC) + timedelta(hours=23)
    assert version.locked_until > datetime.now(tz=UTC) + timedelta(hours=23)
    # Someone holding the backup store's keys tries to destroy the copy.
    with pytest.raises(ClientError) as refused:
        offsite.delete_object(Bucket=LOCKED_BUCKET, Key=version.backup_key, VersionId=stored["VersionId"])
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    with pytest.raises(storage.AccessDenied):
        storage.delete(destination_place(policy), version.backup_key, versions=True)


def test_a_delete_the_store_refuses_is_a_finding_and_the_copy_stays_in_the_ledger(locked, put, offsite):
    policy, key, version = locked
    put(key, b"second version " * 100)
    assert run_policy(policy).state == RunState.SUCCEEDED  # the first version is superseded
    # The ledger says the lock has passed and nothing keeps the old version (a ledger out of
    # step with the store, e.g. restored from an older database): retention tries to delete.
    ObjectVersion.objects.filter(pk=version.pk).update(
        locked_until=datetime.now(tz=UTC) - timedelta(days=1), superseded_at=datetime.now(tz=UTC) - timedelta(days=60)
    )

    run = run_policy(policy, verify="none")

    finding = run.failures.get()
    assert finding.cause == FailureCause.DELETE_REFUSED and finding.resolution == Resolution.ALERTED
    assert finding.key == version.backup_key and "AccessDenied" in finding.detail
    assert run.versions_pruned == 0 and ObjectVersion.objects.filter(pk=version.pk).exists()
    assert offsite.get_object(Bucket=LOCKED_BUCKET, Key=version.backup_key)["Body"].read() == b"first version " * 100


def test_a_legal_hold_is_set_from_the_policy_page_and_retention_keeps_the_copy(locked, make_user, offsite):
    policy, key, version = locked
    client = Client()
    client.force_login(make_user("opshold", role=Role.OPERATIONS))
    page = client.get(reverse("backups:policy_detail", args=[policy.pk])).content.decode()
    assert "has S3 Object Lock enabled" in page and "Set legal hold" in page

    response = client.post(reverse("backups:legal_hold", args=[policy.pk]), {"key": key, "hold": "on"}, follow=True)

    assert "Legal hold set on" in response.content.decode()
    assert offsite.get_object_legal_hold(Bucket=LOCKED_BUCKET, Key=version.backup_key)["LegalHold"]["Status"] == "ON"
    version.refresh_from_db()
    assert version.legal_hold
    assert Event.objects.filter(type="backup.legal_hold.set", subject_id=str(version.pk)).exists()
    page = client.get(reverse("backups:policy_detail", args=[policy.pk])).content.decode()
    assert "Copies on legal hold" in page and key in page
    missing = client.post(reverse("backups:legal_hold", args=[policy.pk]), {"key": "nope", "hold": "on"}, follow=True)
    assert "No backed-up object &#x27;nope&#x27;" in missing.content.decode()


def test_the_policy_page_says_when_the_destination_cannot_lock(make_policy, make_user):
    policy = make_policy()  # the usual offsite bucket, created without Object Lock
    client = Client()
    client.force_login(make_user("opsnolock", role=Role.OPERATIONS))

    page = client.get(reverse("backups:policy_detail", args=[policy.pk])).content.decode()

    assert "does not have S3 Object Lock enabled" in page
    other = Client()
    other.force_login(make_user("pubnolock", role=Role.PUBLISHER))
    assert other.get(reverse("backups:policy_detail", args=[policy.pk])).status_code == 403


def test_an_overwrite_of_a_locked_copy_leaves_the_locked_version_and_is_a_finding(locked, offsite):
    policy, _, version = locked
    original = offsite.get_object(Bucket=LOCKED_BUCKET, Key=version.backup_key)
    # Someone with the store's keys writes other bytes over the copy: a versioned, locked bucket
    # takes it as a new version on top; the locked version itself cannot be changed or removed.
    offsite.put_object(Bucket=LOCKED_BUCKET, Key=version.backup_key, Body=b"ransom note")

    run = run_policy(policy, verify="full")

    finding = run.failures.get()
    assert finding.cause == FailureCause.BACKUP_CORRUPTED and finding.resolution == Resolution.REPAIRED
    assert offsite.get_object(Bucket=LOCKED_BUCKET, Key=version.backup_key)["Body"].read() == b"first version " * 100
    kept = offsite.get_object(Bucket=LOCKED_BUCKET, Key=version.backup_key, VersionId=original["VersionId"])
    assert kept["Body"].read() == b"first version " * 100 and kept["ObjectLockMode"] == "GOVERNANCE"
