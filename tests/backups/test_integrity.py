"""The issue's integrity cases, on two real S3 servers: each is detected, classified, and
repaired or alerted, with the chain from the failure to its root on record."""

import hashlib
import os

import pytest
from django.conf import settings

from backups import storage
from backups.models import (
    CopyMethod,
    Failure,
    FailureCause,
    ObjectVersion,
    Resolution,
    RunState,
    TaskKind,
    VersionState,
)
from core.models import Alert, AlertSeverity, AlertState
from tests.backups.bitrot import flip_byte_on_disk
from tests.backups.conftest import OFFSITE_BUCKET, run_policy

pytestmark = pytest.mark.django_db


def _steps(failure: Failure) -> str:
    return " | ".join(f"{s['step']}: {s['finding']}" for s in failure.chain)


@pytest.fixture
def protected(make_policy, put, tag):
    """A policy with one object backed up offsite: (policy, key, data, version)."""
    policy = make_policy()
    data = os.urandom(50_000)
    key = put(f"uploads/t{tag}/clip.bin", data)
    run = run_policy(policy)
    assert run.state == RunState.SUCCEEDED
    return policy, key, data, ObjectVersion.objects.get(key=key)


def test_flipped_byte_in_backup_copy_is_repaired_from_the_intact_source(protected, offsite, offsite_server):
    policy, key, data, version = protected
    assert flip_byte_on_disk(offsite_server.data_dir, data) == 1

    run = run_policy(policy, verify="full")

    failure = Failure.objects.get(run=run)
    assert failure.cause == FailureCause.BACKUP_CORRUPTED
    assert failure.resolution == Resolution.REPAIRED and run.state == RunState.SUCCEEDED
    chain = _steps(failure)
    for expected in ("Backup copy check", "Ledger", f"Copy task #{version.copied_by_id}", "Source now: same version",
                     "SHA-256 matches the ledger", "Root cause", "Restart: repair task"):
        assert expected in chain
    assert failure.repair_task.kind == TaskKind.REPAIR
    assert offsite.get_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)["Body"].read() == data
    alert = Alert.objects.get(pk=failure.alert_id)
    assert alert.source == "backups" and alert.state == AlertState.RESOLVED


def test_deleted_backup_copy_is_recopied(protected, offsite):
    policy, key, data, version = protected
    offsite.delete_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)

    run = run_policy(policy, verify="full")

    failure = Failure.objects.get(run=run)
    assert (failure.cause, failure.resolution) == (FailureCause.BACKUP_MISSING, Resolution.REPAIRED)
    assert offsite.get_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)["Body"].read() == data


def test_source_changed_during_copy_ends_with_both_versions_backed_up(make_policy, put, s3, settings, monkeypatch, tag):
    settings.BACKUP_INLINE_MAX_BYTES = 256 * 1024
    old, new = os.urandom(3 * 1024 * 1024), os.urandom(2 * 1024 * 1024)
    key = put(f"uploads/t{tag}/growing.bin", old)
    original_stream = storage.stream
    injected = []

    def stream_then_overwrite(place, object_key, **kwargs):
        # The fault: someone writes a new version while the first chunks are on their way.
        for i, chunk in enumerate(original_stream(place, object_key, **kwargs)):
            if i == 1 and object_key == key and not injected:
                injected.append(True)
                s3.put_object(Bucket=settings.S3_BUCKET_INGEST, Key=key, Body=new)
            yield chunk

    monkeypatch.setattr(storage, "stream", stream_then_overwrite)
    run = run_policy(make_policy())

    assert injected
    failure = Failure.objects.get(run=run)
    assert failure.cause == FailureCause.SOURCE_CHANGED
    assert failure.resolution == Resolution.REPAIRED, _steps(failure)
    assert "a newer version" in _steps(failure)
    first, second = ObjectVersion.objects.filter(key=key).order_by("pk")
    assert first.sha256 == hashlib.sha256(old).hexdigest() and not first.is_current
    assert second.sha256 == hashlib.sha256(new).hexdigest() and second.is_current
    assert {first.state, second.state} == {VersionState.PROTECTED}
    assert run.state == RunState.SUCCEEDED


def test_source_bitrot_with_unchanged_metadata_is_told_from_a_change_and_alerted(protected, s3, s3_server):
    policy, key, data, version = protected
    etag_before = s3.head_object(Bucket=settings.S3_BUCKET_INGEST, Key=key)["ETag"]
    assert flip_byte_on_disk(s3_server.data_dir, data) == 1
    assert s3.head_object(Bucket=settings.S3_BUCKET_INGEST, Key=key)["ETag"] == etag_before

    run = run_policy(policy, verify="full")

    assert run.objects_changed == 0  # the listing cannot see it: same ETag and size
    failure = Failure.objects.get(run=run)
    assert (failure.cause, failure.resolution) == (FailureCause.SOURCE_CORRUPTED, Resolution.ALERTED)
    assert "unchanged: not a new version" in _steps(failure) and "Backup copy: verified" in _steps(failure)
    alert = failure.alert
    assert alert.severity == AlertSeverity.CRITICAL and alert.state == AlertState.OPEN
    assert "/backups/restore/" in alert.detail
    assert ObjectVersion.objects.get(pk=version.pk).state == VersionState.PROTECTED
    assert run.state == RunState.PARTIAL


def test_source_bitrot_is_healed_from_the_backup_when_the_policy_says_so(make_policy, put, s3, s3_server, tag):
    policy = make_policy(heal_source=True)
    data = os.urandom(40_000)
    key = put(f"uploads/t{tag}/heal.bin", data)
    run_policy(policy)
    flip_byte_on_disk(s3_server.data_dir, data)

    run = run_policy(policy, verify="full")

    failure = Failure.objects.get(run=run)
    assert (failure.cause, failure.resolution) == (FailureCause.SOURCE_CORRUPTED, Resolution.REPAIRED)
    assert s3.get_object(Bucket=settings.S3_BUCKET_INGEST, Key=key)["Body"].read() == data


def test_source_rotten_before_its_first_copy_is_lost_and_alerted(make_policy, put, s3_server, tag, settings):
    settings.BACKUP_TASK_ATTEMPTS = 2
    policy = make_policy()
    data = os.urandom(30_000)
    key = put(f"uploads/t{tag}/rotten.bin", data)
    flip_byte_on_disk(s3_server.data_dir, data)

    run = run_policy(policy)

    failure = Failure.objects.get(run=run)
    assert (failure.cause, failure.resolution) == (FailureCause.SOURCE_CORRUPTED, Resolution.ALERTED)
    assert "do not match its own ETag" in _steps(failure)
    assert ObjectVersion.objects.get(key=key).state == VersionState.LOST
    assert failure.alert.severity == AlertSeverity.CRITICAL


def test_unreadable_source_is_classified_as_corrupted_not_as_a_network_error(make_policy, put, monkeypatch, tag, settings):
    """A store that checks its own checksums (SeaweedFS does) answers 500 on every read of a
    rotten object while HEAD still works. A real flipped byte without the CRC fix does exactly
    that, but SeaweedFS spends 26 s retrying each such read, so the 500 is injected here."""
    from botocore.exceptions import ClientError

    settings.BACKUP_TASK_ATTEMPTS = 2
    policy = make_policy()
    key = put(f"uploads/t{tag}/unreadable.bin", os.urandom(3000))
    original = storage._get

    def failing(place, object_key, **kwargs):
        if object_key == key:
            error = {"Error": {"Code": "InternalError"}, "ResponseMetadata": {"HTTPStatusCode": 500}}
            raise storage.translate(ClientError(error, "GetObject"), what=f"GET {object_key}") from None
        return original(place, object_key, **kwargs)

    def failing_as_source(place, object_key, *, if_match=None, source=False):
        try:
            return failing(place, object_key, if_match=if_match, source=source)
        except storage.StorageError as exc:
            exc.side = "source" if source else ""
            raise

    monkeypatch.setattr(storage, "_get", failing_as_source)
    run = run_policy(policy)

    failure = Failure.objects.get(run=run)
    assert failure.cause == FailureCause.SOURCE_CORRUPTED, failure.detail
    assert "fails every read" in _steps(failure) or "do not match" in _steps(failure)


def test_no_good_copy_left_raises_a_critical_alert(protected, offsite, s3_server):
    policy, key, data, version = protected
    offsite.delete_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)
    flip_byte_on_disk(s3_server.data_dir, data)

    run = run_policy(policy, verify="full")

    failure = Failure.objects.get(run=run)
    assert (failure.cause, failure.resolution) == (FailureCause.BACKUP_MISSING, Resolution.ALERTED)
    assert "the source is corrupted too" in _steps(failure)
    assert failure.alert.severity == AlertSeverity.CRITICAL and "No good copy remains" in failure.alert.title
    assert ObjectVersion.objects.get(pk=version.pk).state == VersionState.LOST


def test_a_copy_lost_in_one_backup_is_rebuilt_from_another_when_the_source_is_gone(make_policy, put, s3, offsite, tag):
    offsite_policy = make_policy()
    data = os.urandom(20_000)
    key = put(f"uploads/t{tag}/twice.bin", data)
    run_policy(offsite_policy)
    run_policy(make_policy(offsite=False, name=f"local{tag}"))  # same source, other destination
    version = ObjectVersion.objects.get(key=key, source__policy=offsite_policy)
    offsite.delete_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)
    s3.delete_object(Bucket=settings.S3_BUCKET_INGEST, Key=key)

    run = run_policy(offsite_policy, verify="full")

    failure = Failure.objects.get(run=run)
    assert failure.resolution == Resolution.REPAIRED, _steps(failure)
    assert failure.repair_task.method == CopyMethod.FROM_BACKUP
    assert "only backups hold it" in _steps(failure)
    assert offsite.get_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)["Body"].read() == data


def test_a_transient_transfer_error_is_retried_within_the_task(make_policy, put, monkeypatch, tag):
    data = os.urandom(1000)
    put(f"uploads/t{tag}/flaky.bin", data)
    original = storage.put_once
    calls = []

    def flaky(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise storage.TransferFailed("connection reset by peer (injected)")
        return original(*args, **kwargs)

    monkeypatch.setattr(storage, "put_once", flaky)
    run = run_policy(make_policy())

    assert run.state == RunState.SUCCEEDED and not Failure.objects.filter(run=run).exists()
    assert run.tasks.get().attempts == 2


def test_persistent_transfer_errors_alert_and_the_next_run_copies(make_policy, put, monkeypatch, tag, settings):
    settings.BACKUP_TASK_ATTEMPTS = 2
    policy = make_policy()
    key = put(f"uploads/t{tag}/down.bin", os.urandom(1000))

    def down(*args, **kwargs):
        raise storage.TransferFailed("connection refused (injected)")

    with monkeypatch.context() as patch:
        patch.setattr(storage, "put_once", down)
        first = run_policy(policy)
    failure = Failure.objects.get(run=first)
    assert (failure.cause, failure.resolution) == (FailureCause.TRANSFER_ERROR, Resolution.ALERTED)
    assert failure.alert.severity == AlertSeverity.WARNING
    assert ObjectVersion.objects.get(key=key).state == VersionState.PENDING

    second = run_policy(policy, verify="none")
    assert second.objects_copied == 1
    assert ObjectVersion.objects.get(key=key).state == VersionState.PROTECTED


def test_refused_credentials_fail_the_run_with_a_permission_alert(make_policy, put, tag, monkeypatch):
    policy = make_policy()
    put(f"uploads/t{tag}/x.bin", b"x")
    monkeypatch.setenv("REELFLOW_TEST_OFFSITE_SECRET_KEY", "not-the-secret")

    run = run_policy(policy)

    assert run.state == RunState.FAILED
    failure = Failure.objects.get(run=run)
    assert failure.cause == FailureCause.PERMISSION
    assert failure.alert.severity == AlertSeverity.CRITICAL


def test_a_missing_credential_variable_is_named_in_the_error(make_policy, monkeypatch):
    policy = make_policy()
    monkeypatch.delenv("REELFLOW_TEST_OFFSITE_ACCESS_KEY")

    run = run_policy(policy)

    assert run.state == RunState.FAILED
    assert "REELFLOW_TEST_OFFSITE_ACCESS_KEY is not set" in run.error
