import hashlib

import pytest
import requests
from django.conf import settings

from core import s3 as s3_module


def test_credentials_are_enforced(s3, s3_server):
    import boto3
    from botocore.exceptions import ClientError

    intruder = boto3.client(
        "s3", endpoint_url=s3_server.endpoint_url, aws_access_key_id="nobody",
        aws_secret_access_key="wrong-secret", region_name="us-east-1",
    )
    with pytest.raises(ClientError):
        intruder.list_objects_v2(Bucket=settings.S3_BUCKET_INGEST)
    anonymous = requests.get(f"{s3_server.endpoint_url}/{settings.S3_BUCKET_INGEST}/", timeout=5)
    assert anonymous.status_code in (401, 403)


def test_buckets_ensure_is_idempotent_and_sets_cors(s3):
    s3_module.buckets_ensure(["reelflow-extra"], cors_origins=["http://127.0.0.1:8000"])
    s3_module.buckets_ensure(["reelflow-extra"], cors_origins=["http://127.0.0.1:8000"])
    rules = s3.get_bucket_cors(Bucket="reelflow-extra")["CORSRules"]
    assert rules[0]["AllowedOrigins"] == ["http://127.0.0.1:8000"]
    assert "ETag" in rules[0]["ExposeHeaders"]


def test_buckets_ensure_warms_a_new_bucket_and_leaves_it_empty(s3):
    puts = []

    def seen(params, **_):
        puts.append(params["Key"])

    s3.meta.events.register("before-parameter-build.s3.PutObject", seen)
    try:
        s3_module.buckets_ensure(["reelflow-warmed"], s3=s3)
        s3_module.buckets_ensure(["reelflow-warmed"], s3=s3)  # exists: no second write
    finally:
        s3.meta.events.unregister("before-parameter-build.s3.PutObject", seen)
    assert puts == [s3_module.WARM_KEY]
    assert s3.list_objects_v2(Bucket="reelflow-warmed").get("KeyCount") == 0


def test_presigned_get_and_put_round_trip(s3):
    key = "tests/presign.bin"
    put = requests.put(s3_module.presign_put(settings.S3_BUCKET_INGEST, key), data=b"hello", timeout=5)
    assert put.status_code == 200
    got = requests.get(s3_module.presign_get(settings.S3_BUCKET_INGEST, key), timeout=5)
    assert got.content == b"hello"
    tampered = s3_module.presign_get(settings.S3_BUCKET_INGEST, key).replace("presign.bin", "other.bin")
    assert requests.get(tampered, timeout=5).status_code == 403


def test_object_digest_streams_sha256_and_size(s3):
    data = bytes(range(256)) * 9000  # > 2 MiB, several read chunks
    s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key="tests/digest.bin", Body=data)
    digest = s3_module.object_digest(settings.S3_BUCKET_MEDIA, "tests/digest.bin")
    assert digest.sha256 == hashlib.sha256(data).hexdigest()
    assert digest.size == len(data)


def test_multipart_etags_are_never_taken_for_md5(s3):
    bucket, key = settings.S3_BUCKET_INGEST, "tests/multipart.bin"
    upload = s3.create_multipart_upload(Bucket=bucket, Key=key)
    parts = []
    for number in (1, 2):
        body = bytes([number]) * (5 * 1024 * 1024)
        etag = s3.upload_part(Bucket=bucket, Key=key, UploadId=upload["UploadId"], PartNumber=number, Body=body)["ETag"]
        parts.append({"ETag": etag, "PartNumber": number})
    s3.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload["UploadId"], MultipartUpload={"Parts": parts})
    etag = s3.head_object(Bucket=bucket, Key=key)["ETag"]
    assert s3_module.is_multipart_etag(etag)
    single = s3.put_object(Bucket=bucket, Key="tests/single.bin", Body=b"x")["ETag"]
    assert not s3_module.is_multipart_etag(single)
    assert s3_module.etag_clean(single) == hashlib.md5(b"x", usedforsecurity=False).hexdigest()
