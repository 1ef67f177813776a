"""Needs-backup detection and copying, against two real S3 servers."""

import hashlib
import os

import pytest
from django.conf import settings

from backups import storage
from backups.models import CopyMethod, CopyTask, ObjectVersion, RunState, VersionState
from backups.services import scan
from backups.services.common import destination_place
from tests.backups.conftest import OFFSITE_BUCKET, run_policy

pytestmark = pytest.mark.django_db


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_new_objects_are_copied_byte_identical_with_their_sha256(make_policy, put, offsite, tag):
    policy = make_policy()
    blobs = {f"uploads/t{tag}/{i}.bin": os.urandom(1000 + i) for i in range(5)}
    for key, data in blobs.items():
        put(key, data)

    run = run_policy(policy)

    assert run.state == RunState.SUCCEEDED, run.error
    assert (run.objects_scanned, run.objects_new, run.objects_copied) == (5, 5, 5)
    for key, data in blobs.items():
        version = ObjectVersion.objects.get(key=key, is_current=True)
        assert version.state == VersionState.PROTECTED
        assert version.sha256 == _sha(data)
        assert version.backup_key == f"t{tag}/sha256/{_sha(data)[:2]}/{_sha(data)[2:4]}/{_sha(data)}"
        copy = offsite.get_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)["Body"].read()
        assert copy == data


def test_listing_is_paged_and_changes_and_deletions_are_found(make_policy, put, s3, tag):
    policy = make_policy()
    keys = [put(f"uploads/t{tag}/k{i:02d}", os.urandom(300)) for i in range(7)]
    run = run_policy(policy)
    assert run.objects_copied == 7

    put(keys[0], b"changed content")
    s3.delete_object(Bucket=settings.S3_BUCKET_INGEST, Key=keys[1])
    put(f"uploads/t{tag}/k99", b"brand new")
    from backups.models import RunTrigger
    from backups.services import runs

    second = runs.run_start(policy=policy, trigger=RunTrigger.COMMAND)
    pages = []
    original = scan.scan_page_record

    def spy(**kwargs):
        pages.append(len(kwargs["page"]))
        return original(**kwargs)

    scan.scan_page_record = spy
    try:
        second.refresh_from_db()
        scan.run_scan(run=second, page_size=3)
    finally:
        scan.scan_page_record = original
    assert pages == [3, 3, 1]  # 7 objects after one deletion and one addition, three per page
    second.refresh_from_db()
    assert (second.objects_new, second.objects_changed, second.objects_deleted) == (1, 1, 1)
    # Only the new and the changed object need a copy.
    assert CopyTask.objects.filter(run=second).count() == 2
    old, new = ObjectVersion.objects.filter(key=keys[0]).order_by("pk")
    assert not old.is_current and old.superseded_at and new.is_current
    gone = ObjectVersion.objects.get(key=keys[1])
    assert not gone.is_current and gone.deleted_at


def test_unchanged_sources_cost_a_listing_and_no_copy(make_policy, put, tag):
    policy = make_policy()
    for i in range(4):
        put(f"uploads/t{tag}/{i}", os.urandom(100))
    run_policy(policy)
    again = run_policy(policy, verify="none")
    assert again.state == RunState.SUCCEEDED
    assert (again.objects_scanned, again.objects_copied, again.objects_new) == (4, 0, 0)


def test_large_object_on_another_server_is_streamed_with_checked_parts(make_policy, put, offsite, settings, tag):
    settings.BACKUP_INLINE_MAX_BYTES = 1024 * 1024
    settings.BACKUP_PART_BYTES = 5 * 1024 * 1024
    data = os.urandom(12 * 1024 * 1024)
    put(f"uploads/t{tag}/big.bin", data)

    run = run_policy(make_policy())

    task = CopyTask.objects.get(run=run)
    assert task.method == CopyMethod.STREAMED
    version = task.version
    assert version.sha256 == _sha(data)
    assert offsite.get_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key)["Body"].read() == data
    # Staging objects are gone once the content-addressed copy exists.
    staged = offsite.list_objects_v2(Bucket=OFFSITE_BUCKET, Prefix=f"t{tag}/staging/").get("Contents")
    assert not staged


def test_large_object_on_the_same_server_is_copied_server_side(make_policy, put, s3, settings, tag):
    settings.BACKUP_INLINE_MAX_BYTES = 1024 * 1024
    data = os.urandom(3 * 1024 * 1024)
    put(f"uploads/t{tag}/big.bin", data)

    run = run_policy(make_policy(offsite=False))

    task = CopyTask.objects.get(run=run)
    assert task.method == CopyMethod.SERVER_COPY
    copy = s3.get_object(Bucket=settings.S3_BUCKET_BACKUP, Key=task.version.backup_key)["Body"].read()
    assert copy == data and task.version.sha256 == _sha(data)


def test_multipart_etag_is_never_taken_for_an_md5(make_policy, s3, settings, tag):
    """A multipart upload's ETag is not its MD5: copying and verifying it must not fail."""
    key = f"uploads/t{tag}/multipart.bin"
    upload = s3.create_multipart_upload(Bucket=settings.S3_BUCKET_INGEST, Key=key)
    parts, chunks = [], [os.urandom(5 * 1024 * 1024), os.urandom(1000)]
    for number, body in enumerate(chunks, start=1):
        etag = s3.upload_part(Bucket=settings.S3_BUCKET_INGEST, Key=key, UploadId=upload["UploadId"],
                              PartNumber=number, Body=body)["ETag"]
        parts.append({"ETag": etag, "PartNumber": number})
    s3.complete_multipart_upload(Bucket=settings.S3_BUCKET_INGEST, Key=key, UploadId=upload["UploadId"],
                                 MultipartUpload={"Parts": parts})

    run = run_policy(make_policy(), verify="full")

    assert run.state == RunState.SUCCEEDED, list(run.failures.values("cause", "detail"))
    version = ObjectVersion.objects.get(key=key)
    assert version.etag.endswith("-2") and version.md5 != version.etag
    assert version.sha256 == _sha(b"".join(chunks))


def test_backup_keys_are_write_once(make_policy, offsite, tag):
    policy = make_policy()
    place = destination_place(policy)
    key = f"t{tag}/sha256/once"
    good = b"the good copy"
    assert storage.put_once(place, key, good, md5=hashlib.md5(good, usedforsecurity=False).hexdigest()) is True
    bad = b"a later, bad copy"
    assert storage.put_once(place, key, bad, md5=hashlib.md5(bad, usedforsecurity=False).hexdigest()) is False
    assert offsite.get_object(Bucket=OFFSITE_BUCKET, Key=key)["Body"].read() == good


def test_identical_content_is_stored_once(make_policy, put, tag):
    data = os.urandom(2000)
    put(f"uploads/t{tag}/a", data)
    put(f"uploads/t{tag}/b", data)
    run = run_policy(make_policy(), concurrency=1)
    versions = list(ObjectVersion.objects.filter(source__policy=run.policy))
    assert len({v.backup_key for v in versions}) == 1
    assert run.objects_deduplicated == 1 and run.bytes_copied == len(data)
