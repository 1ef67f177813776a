"""Write-once objects (a rendition named by its parameters' digest): new bytes under such a key
are flagged, the previous good version stays the current backup, and a critical alert says
so; the same content under a new ETag is an ordinary new version."""

import hashlib
import os

import pytest
from django.conf import settings

from backups.models import Failure, FailureCause, ObjectVersion, Resolution, RestoreScope, RunState
from backups.services import restore as restore_service
from core.models import Alert, AlertSeverity, AlertState
from tests.backups.conftest import run_policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def rendition(make_policy, put, tag):
    """A media source whose renditions are write-once, with one rendition backed up."""
    policy = make_policy(sources=("media",))
    policy.sources.update(write_once_patterns=f"assets/t{tag}/*/renditions/*\n")
    data = os.urandom(40_000)
    key = put(f"assets/t{tag}/jobs/7/renditions/h264-480p-3f9a2c.mp4", data, bucket=settings.S3_BUCKET_MEDIA)
    assert run_policy(policy).state == RunState.SUCCEEDED
    return policy, key, data


def _current(policy, key) -> ObjectVersion:
    return ObjectVersion.objects.get(source__policy=policy, key=key, is_current=True)


def test_an_overwritten_write_once_object_is_flagged_and_its_good_version_stays_current(rendition, put, s3):
    policy, key, data = rendition
    good = _current(policy, key)
    altered = bytearray(data)
    altered[1000:1010] = b"tampered!!"
    put(key, bytes(altered), bucket=settings.S3_BUCKET_MEDIA)

    run = run_policy(policy)

    assert run.state == RunState.PARTIAL and run.objects_changed == 1
    assert _current(policy, key).pk == good.pk and good.sha256 == hashlib.sha256(data).hexdigest()
    flagged = ObjectVersion.objects.get(source__policy=policy, key=key, tampered_at__isnull=False)
    assert flagged.sha256 == hashlib.sha256(altered).hexdigest() and not flagged.is_current
    failure = Failure.objects.get(run=run)
    assert failure.cause == FailureCause.WRITE_ONCE_CHANGED and failure.resolution == Resolution.ALERTED
    assert any(step["step"] == "Kept" for step in failure.chain)
    alert = Alert.objects.get(pk=failure.alert_id)
    assert alert.severity == AlertSeverity.CRITICAL and alert.state == AlertState.OPEN
    assert "Write-once object overwritten" in alert.title and "/backups/restore/" in alert.detail

    again = run_policy(policy)  # nothing new: no second finding, no second alert, no new version
    assert again.state == RunState.SUCCEEDED and not Failure.objects.filter(run=again).exists()
    assert ObjectVersion.objects.filter(source__policy=policy, key=key).count() == 2
    alert.refresh_from_db()
    assert alert.occurrences == 1

    planned = restore_service.restore_create(policy=policy, scope=RestoreScope.OBJECT, selector=key)
    assert restore_service.restore_execute(restore_id=planned.pk).items.get().version_id == good.pk
    assert s3.get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key)["Body"].read() == data
    after = run_policy(policy)
    assert after.state == RunState.SUCCEEDED and after.objects_changed == 0


def test_the_same_bytes_under_a_new_etag_are_an_ordinary_new_version(rendition, s3):
    policy, key, data = rendition
    first = _current(policy, key)
    # A multipart upload of the same bytes: another ETag, the same content.
    upload = s3.create_multipart_upload(Bucket=settings.S3_BUCKET_MEDIA, Key=key)
    part = s3.upload_part(Bucket=settings.S3_BUCKET_MEDIA, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=data)
    s3.complete_multipart_upload(
        Bucket=settings.S3_BUCKET_MEDIA, Key=key, UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]},
    )  # fmt: skip

    run = run_policy(policy)

    assert run.state == RunState.SUCCEEDED and not Failure.objects.filter(run=run).exists()
    now = _current(policy, key)
    assert now.pk != first.pk and now.sha256 == first.sha256 and now.overwrites_id is None
    assert not ObjectVersion.objects.filter(source__policy=policy, tampered_at__isnull=False).exists()


def test_a_key_outside_the_write_once_patterns_changes_as_usual(rendition, put, tag):
    policy, _, _ = rendition
    key = put(f"assets/t{tag}/jobs/7/quality/00000.json", b'{"psnr": 40}', bucket=settings.S3_BUCKET_MEDIA)
    run_policy(policy)
    put(key, b'{"psnr": 41}', bucket=settings.S3_BUCKET_MEDIA)

    run = run_policy(policy)

    assert run.state == RunState.SUCCEEDED and run.objects_changed == 1
    assert _current(policy, key).sha256 == hashlib.sha256(b'{"psnr": 41}').hexdigest()
