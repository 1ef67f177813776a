"""Versioned sources (a real SeaweedFS bucket with versioning on): ListObjectVersions catches
every version written between two sweeps, each is copied from its exact version id, any of them
can be restored, and a version deleted before it was copied is recorded as missed, with an alert."""

import hashlib
import time
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command

from backups.models import FailureCause, ObjectVersion, RestoreScope, RunState, RunTrigger, VersionState
from backups.services import restore as restore_service
from backups.services import runs, scan
from core.models import Alert, AlertSeverity
from tests.backups.conftest import OFFSITE_BUCKET, run_policy
from tests.backups.factories import PolicySourceFactory

pytestmark = pytest.mark.django_db

VERSIONED = "reelflow-versioned"


@pytest.fixture
def versioned(make_policy, s3, tag):
    """A policy protecting a prefix of a versioned bucket; put(data) writes a new version."""
    if VERSIONED not in {b["Name"] for b in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=VERSIONED)
    s3.put_bucket_versioning(Bucket=VERSIONED, VersioningConfiguration={"Status": "Enabled"})
    policy = make_policy(sources=())
    PolicySourceFactory(policy=policy, bucket=VERSIONED, prefix=f"v{tag}/")
    key = f"v{tag}/clip.bin"

    def put(data: bytes) -> str:
        return s3.put_object(Bucket=VERSIONED, Key=key, Body=data)["VersionId"]

    return policy, key, put


def test_every_version_written_between_two_sweeps_is_backed_up_and_any_can_be_restored(versioned, s3, offsite):
    policy, key, put = versioned
    blobs = [b"first " * 500, b"second " * 500, b"third " * 500]
    ids = [put(blobs[0])]
    assert run_policy(policy).state == RunState.SUCCEEDED
    ids.append(put(blobs[1]))
    time.sleep(1.1)  # the store's LastModified has whole seconds: as-of below needs them apart
    ids.append(put(blobs[2]))  # overwritten twice before the next sweep

    run = run_policy(policy, verify="full")

    assert run.state == RunState.SUCCEEDED and run.objects_copied == 2 and run.objects_changed == 2
    ledger = {v.version_id: v for v in ObjectVersion.objects.filter(source__policy=policy)}
    assert set(ledger) == set(ids)
    for version_id, data in zip(ids, blobs, strict=True):
        version = ledger[version_id]
        assert version.state == VersionState.PROTECTED and version.sha256 == hashlib.sha256(data).hexdigest()
        assert offsite.get_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)["Body"].read() == data
    assert [ledger[i].is_current for i in ids] == [False, False, True]
    assert ledger[ids[1]].superseded_at == ledger[ids[2]].first_seen_at  # when the third was written

    middle = ledger[ids[1]]
    planned = restore_service.restore_create(
        policy=policy, scope=RestoreScope.OBJECT, selector=key, as_of=middle.first_seen_at + timedelta(microseconds=1),
        target_bucket=settings.S3_BUCKET_MEDIA, target_prefix="restored-version/",
    )
    done = restore_service.restore_execute(restore_id=planned.pk)
    assert done.state == "succeeded"
    assert s3.get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=f"restored-version/{key}")["Body"].read() == blobs[1]
    # Any version by its id, whenever it was written.
    call_command("restore", "--policy", policy.name, "--key", key, "--version-id", ids[0],
                 "--to-bucket", settings.S3_BUCKET_MEDIA, "--to-prefix", "restored-first/")  # fmt: skip
    assert s3.get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=f"restored-first/{key}")["Body"].read() == blobs[0]


def test_a_version_deleted_before_it_was_copied_is_recorded_as_missed(versioned, s3):
    policy, key, put = versioned
    put(b"one " * 300)
    run_policy(policy)
    gone, _ = put(b"two " * 300), put(b"three " * 300)
    run = runs.run_start(policy=policy, trigger=RunTrigger.COMMAND, verify="none")
    scan.run_scan(run=run)  # both new versions are listed and queued
    s3.delete_object(Bucket=VERSIONED, Key=key, VersionId=gone)  # then the middle one is destroyed

    run = runs.run_execute(run_id=run.pk)

    missed = ObjectVersion.objects.get(source__policy=policy, version_id=gone)
    assert missed.state == VersionState.VANISHED
    failure = run.failures.get()
    assert failure.cause == FailureCause.SOURCE_CHANGED and "missed" in failure.action
    alert = Alert.objects.get(pk=failure.alert_id)
    assert alert.severity == AlertSeverity.WARNING and alert.title == f"Version missed: {key}"
    current = ObjectVersion.objects.get(source__policy=policy, key=key, is_current=True)
    assert current.state == VersionState.PROTECTED and current.sha256 == hashlib.sha256(b"three " * 300).hexdigest()
