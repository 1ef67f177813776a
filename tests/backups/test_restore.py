"""Restore round trips: byte-identical, verified by SHA-256 after writing, from the page's
service and from manage.py restore."""

import hashlib
import os
from datetime import timedelta

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError

from backups.models import ObjectVersion, RestoreScope, RestoreState, TaskState
from backups.services import restore as restore_service
from core.services import event_record
from tests.backups.conftest import OFFSITE_BUCKET, run_policy

pytestmark = pytest.mark.django_db


def _get(s3, key, bucket=None) -> bytes:
    return s3.get_object(Bucket=bucket or settings.S3_BUCKET_INGEST, Key=key)["Body"].read()


def _restore(policy, **kwargs):
    planned = restore_service.restore_create(policy=policy, **kwargs)
    return restore_service.restore_execute(restore_id=planned.pk)


def test_one_object_restored_to_its_original_place_is_byte_identical(make_policy, put, s3, tag):
    policy = make_policy()
    data = os.urandom(70_000)
    key = put(f"uploads/t{tag}/clip.mp4", data)
    run_policy(policy)
    s3.delete_object(Bucket=settings.S3_BUCKET_INGEST, Key=key)
    run_policy(policy, verify="none")  # the deletion is recorded; the backup stays

    done = _restore(policy, scope=RestoreScope.OBJECT, selector=key)

    assert done.state == RestoreState.SUCCEEDED
    assert _get(s3, key) == data
    item = done.items.get()
    assert item.sha256_written == hashlib.sha256(data).hexdigest()


def test_a_prefix_is_restored_to_another_bucket_under_a_prefix(make_policy, put, s3, tag):
    policy = make_policy()
    blobs = {put(f"uploads/t{tag}/dir/{i}", os.urandom(900 + i)): None for i in range(3)}
    put(f"uploads/t{tag}/other", b"not under the prefix")
    run_policy(policy)

    done = _restore(
        policy, scope=RestoreScope.PREFIX, selector=f"uploads/t{tag}/dir/",
        target_bucket=settings.S3_BUCKET_MEDIA, target_prefix=f"restored/t{tag}/",
    )

    assert done.state == RestoreState.SUCCEEDED and done.objects_total == 3
    for key in blobs:
        assert _get(s3, f"restored/t{tag}/{key}", settings.S3_BUCKET_MEDIA) == _get(s3, key)


def test_large_objects_stream_back_and_are_read_back(make_policy, put, s3, settings, tag):
    settings.BACKUP_INLINE_MAX_BYTES = 1024 * 1024
    data = os.urandom(6 * 1024 * 1024)
    key = put(f"uploads/t{tag}/big.bin", data)
    policy = make_policy()
    run_policy(policy)

    done = _restore(policy, scope=RestoreScope.OBJECT, selector=key, target_bucket=settings.S3_BUCKET_MEDIA,
                    target_prefix=f"r{tag}/")

    assert done.state == RestoreState.SUCCEEDED
    assert _get(s3, f"r{tag}/{key}", settings.S3_BUCKET_MEDIA) == data


def test_everything_of_one_asset_comes_back(make_policy, put, s3, tag):
    policy = make_policy(sources=("ingest", "media"))
    asset_id = 10**7 + int(tag[:6], 16)  # far from the ids other tests' pipelines create
    upload = put(f"uploads/t{tag}/source.mov", os.urandom(5000))
    # Protect exactly this asset's media (the default policy protects all of assets/).
    media_source = policy.sources.get(bucket="${S3_BUCKET_MEDIA}")
    media_source.prefix = f"assets/{asset_id}/"
    media_source.save(update_fields=["prefix"])
    rendition = put(f"assets/{asset_id}/jobs/1/720p.mp4", os.urandom(4000), bucket=settings.S3_BUCKET_MEDIA)
    playlist = put(f"assets/{asset_id}/jobs/1/master.m3u8", b"#EXTM3U\n", bucket=settings.S3_BUCKET_MEDIA)
    put(f"assets/{asset_id}0/unrelated.mp4", b"another asset", bucket=settings.S3_BUCKET_MEDIA)
    event_record(type="asset.created", subject=("pipeline.asset", asset_id), payload={"key": upload, "size": 5000})
    run_policy(policy)
    originals = {k: _get(s3, k, b) for k, b in [(upload, None), (rendition, settings.S3_BUCKET_MEDIA),
                                                  (playlist, settings.S3_BUCKET_MEDIA)]}
    for key, bucket in [(upload, settings.S3_BUCKET_INGEST), (rendition, settings.S3_BUCKET_MEDIA)]:
        s3.delete_object(Bucket=bucket, Key=key)

    done = _restore(policy, scope=RestoreScope.ASSET, selector=str(asset_id))

    assert done.state == RestoreState.SUCCEEDED
    assert sorted(done.items.values_list("key", flat=True)) == sorted(originals)
    assert _get(s3, upload) == originals[upload]
    assert _get(s3, rendition, settings.S3_BUCKET_MEDIA) == originals[rendition]


def test_as_of_restores_the_version_current_then(make_policy, put, s3, tag):
    policy = make_policy()
    key = put(f"uploads/t{tag}/doc.txt", b"first version")
    run_policy(policy)
    first_seen = ObjectVersion.objects.get(key=key).first_seen_at
    put(key, b"second version")
    run_policy(policy, verify="none")

    done = _restore(policy, scope=RestoreScope.OBJECT, selector=key, as_of=first_seen + timedelta(milliseconds=1))

    assert done.state == RestoreState.SUCCEEDED
    assert _get(s3, key) == b"first version"


def test_a_damaged_backup_copy_is_never_written_over_the_target(make_policy, put, s3, offsite, tag):
    policy = make_policy()
    key = put(f"uploads/t{tag}/precious.bin", b"precious bytes")
    run_policy(policy)
    version = ObjectVersion.objects.get(key=key)
    offsite.put_object(Bucket=OFFSITE_BUCKET, Key=version.backup_key, Body=b"precious bytez")
    put(key, b"what is there now")

    done = _restore(policy, scope=RestoreScope.OBJECT, selector=key)

    assert done.state == RestoreState.FAILED
    assert "damaged, nothing was written" in done.items.get().error
    assert _get(s3, key) == b"what is there now"


def test_nothing_to_restore_is_refused_with_a_reason(make_policy):
    with pytest.raises(restore_service.RestoreRejected, match="No backed-up object"):
        restore_service.restore_create(policy=make_policy(), scope=RestoreScope.OBJECT, selector="nope")


def test_manage_py_restore_round_trip(make_policy, put, s3, tag, capsys):
    policy = make_policy()
    data = os.urandom(3000)
    key = put(f"uploads/t{tag}/cli.bin", data)
    run_policy(policy)
    s3.delete_object(Bucket=settings.S3_BUCKET_INGEST, Key=key)

    with pytest.raises(CommandError, match="--yes"):
        call_command("restore", "--policy", policy.name, "--key", key)
    call_command("restore", "--policy", policy.name, "--key", key, "--yes")

    assert _get(s3, key) == data
    assert "restored and verified" in capsys.readouterr().out
    assert policy.restores.get().items.get().state == TaskState.DONE
