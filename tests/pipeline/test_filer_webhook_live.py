"""The real thing: SeaweedFS's filer posts its webhook to a running Reelflow, and an object
written with plain boto3 (as `aws s3 cp` would) becomes exactly one job."""

import pytest
from django.conf import settings as django_settings

from core import s3 as s3_module
from pipeline.models import EncodeJob, IngestEvent
from tests.conftest import TEST_S3_ACCESS_KEY, TEST_S3_SECRET_KEY, wait_until


@pytest.fixture
def webhook_s3(tmp_path, live_server, settings):
    from devservices.seaweed import start_seaweed

    server = start_seaweed(
        data_dir=tmp_path / "weed",
        access_key=TEST_S3_ACCESS_KEY,
        secret_key=TEST_S3_SECRET_KEY,
        webhook_url=f"{live_server.url}/events/s3/",
        webhook_token=django_settings.S3_EVENTS_TOKEN,
    )
    settings.S3_ENDPOINT_URL = settings.S3_PUBLIC_ENDPOINT_URL = server.endpoint_url
    settings.S3_ACCESS_KEY, settings.S3_SECRET_KEY = TEST_S3_ACCESS_KEY, TEST_S3_SECRET_KEY
    s3_module.clients_reset()
    s3_module.buckets_ensure([settings.S3_BUCKET_INGEST, settings.S3_BUCKET_MEDIA])
    yield server
    server.stop()
    s3_module.clients_reset()


def test_boto3_upload_reaches_reelflow_through_the_filer_webhook(webhook_s3, publisher, redis_conn, tmp_path):
    client = s3_module.client()
    key = f"uploads/{publisher.username}/hooked.mp4"
    client.put_object(Bucket=django_settings.S3_BUCKET_INGEST, Key=key, Body=b"not really a video",
                      Metadata={"profile": "fast"})
    event = wait_until(lambda: IngestEvent.objects.filter(key=key).first(), timeout=20, message="the webhook")
    assert event.source == IngestEvent.Source.FILER
    assert event.job is not None and event.job.profile.slug == "fast"
    # A multipart upload (what browsers and big `aws s3 cp` do) is announced once, when complete.
    big_key = f"uploads/{publisher.username}/multipart.mp4"
    upload = client.create_multipart_upload(Bucket=django_settings.S3_BUCKET_INGEST, Key=big_key)
    parts = []
    for number in (1, 2):
        etag = client.upload_part(Bucket=django_settings.S3_BUCKET_INGEST, Key=big_key, UploadId=upload["UploadId"],
                                  PartNumber=number, Body=b"x" * (5 * 1024 * 1024))["ETag"]
        parts.append({"ETag": etag, "PartNumber": number})
    client.complete_multipart_upload(Bucket=django_settings.S3_BUCKET_INGEST, Key=big_key,
                                     UploadId=upload["UploadId"], MultipartUpload={"Parts": parts})
    wait_until(lambda: IngestEvent.objects.filter(key=big_key).exists(), timeout=20, message="the multipart webhook")
    assert EncodeJob.objects.filter(asset__source_key=big_key).count() == 1
    assert IngestEvent.objects.filter(key__contains=".uploads").count() == 0
