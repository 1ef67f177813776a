"""The one S3 module: client factory from settings, presigning, checksums.

Every byte Reelflow moves goes through S3, so web and workers on different machines share
nothing but these settings. Clients are cached per process (boto3 clients are thread-safe to
use but not to create concurrently) and per endpoint.
"""

import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import boto3
from botocore.config import Config
from django.conf import settings

# A multipart upload's ETag is md5-of-md5s plus "-<parts>": never the object's MD5.
_MULTIPART_ETAG = re.compile(r'^"?[0-9a-f]{32}-\d+"?$')


@dataclass(frozen=True)
class S3Target:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"


def default_target(*, public: bool = False) -> S3Target:
    return S3Target(
        endpoint_url=settings.S3_PUBLIC_ENDPOINT_URL if public else settings.S3_ENDPOINT_URL,
        access_key=settings.S3_ACCESS_KEY,
        secret_key=settings.S3_SECRET_KEY,
        region=settings.S3_REGION,
    )


_clients: dict[tuple[int, S3Target], object] = {}
_clients_lock = threading.Lock()


def client(target: S3Target | None = None, *, public: bool = False):
    """A boto3 S3 client for `target` (default: the settings' endpoint), one per process.

    boto3 clients are safe to share between threads but slow to build (0.2-0.3 s measured:
    Django runs each sync request in a fresh thread, so a per-thread cache rebuilt one per
    request). They are built under a lock, since creating them is not thread-safe, and keyed by
    pid so a forked RQ work horse never shares its parent's connections.

    `public=True` signs for the endpoint browsers reach, which may differ from the one workers
    use inside the network.
    """
    target = target or default_target(public=public)
    key = (os.getpid(), target)
    found = _clients.get(key)
    if found is not None:
        return found
    with _clients_lock:
        found = _clients.get(key)
        if found is None:
            found = _clients[key] = boto3.session.Session().client(
                "s3",
                endpoint_url=target.endpoint_url or None,
                aws_access_key_id=target.access_key or None,
                aws_secret_access_key=target.secret_key or None,
                region_name=target.region,
                config=Config(
                    signature_version="s3v4",
                    s3={"addressing_style": "path"},
                    retries={"mode": "standard", "max_attempts": settings.S3_MAX_ATTEMPTS},
                    connect_timeout=5,
                    read_timeout=60,
                    max_pool_connections=32,
                    # Checksums only where the API requires them: SeaweedFS and older S3s reject
                    # the CRC trailers that newer botocore adds by default.
                    request_checksum_calculation="when_required",
                    response_checksum_validation="when_required",
                ),
            )
    return found


def clients_reset() -> None:
    """Forget cached clients (tests change endpoints between sessions)."""
    with _clients_lock:
        _clients.clear()


def presign_get(bucket: str, key: str, *, expires: int | None = None, public: bool = True) -> str:
    return client(public=public).generate_presigned_url(
        "get_object",
        Params={"Bucket": bucket, "Key": key},
        ExpiresIn=expires or settings.S3_PRESIGN_SECONDS,
    )


def presign_put(bucket: str, key: str, *, expires: int | None = None, public: bool = True) -> str:
    return client(public=public).generate_presigned_url(
        "put_object",
        Params={"Bucket": bucket, "Key": key},
        ExpiresIn=expires or settings.S3_PRESIGN_SECONDS,
    )


def presign_upload_part(
    bucket: str, key: str, *, upload_id: str, part_number: int, expires: int = 900
) -> str:
    """A URL that lets its holder PUT exactly one part of one multipart upload, briefly."""
    return client(public=True).generate_presigned_url(
        "upload_part",
        Params={"Bucket": bucket, "Key": key, "UploadId": upload_id, "PartNumber": part_number},
        ExpiresIn=expires,
    )


def is_multipart_etag(etag: str | None) -> bool:
    return bool(etag) and bool(_MULTIPART_ETAG.match(etag))


def etag_clean(etag: str | None) -> str:
    return (etag or "").strip('"')


@dataclass(frozen=True)
class Digest:
    sha256: str
    size: int
    md5: str


def digest_chunks(chunks: Iterable[bytes]) -> Digest:
    sha = hashlib.sha256()
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    for chunk in chunks:
        sha.update(chunk)
        md5.update(chunk)
        size += len(chunk)
    return Digest(sha256=sha.hexdigest(), size=size, md5=md5.hexdigest())


def iter_body(body, chunk_size: int = 1024 * 1024) -> Iterator[bytes]:
    while chunk := body.read(chunk_size):
        yield chunk


def object_digest(bucket: str, key: str, *, version_id: str | None = None, s3=None) -> Digest:
    """SHA-256, MD5 and size of an object, streamed (never the whole object in memory)."""
    s3 = s3 or client()
    params = {"Bucket": bucket, "Key": key}
    if version_id:
        params["VersionId"] = version_id
    body = s3.get_object(**params)["Body"]
    try:
        return digest_chunks(iter_body(body))
    finally:
        body.close()


def buckets_missing(names: Iterable[str], *, s3=None) -> list[str]:
    """The buckets among `names` that do not exist (yet). Errors other than a missing bucket
    (the server is down, the keys are wrong) are raised."""
    from botocore.exceptions import ClientError

    s3 = s3 or client()
    missing = []
    for name in names:
        try:
            s3.head_bucket(Bucket=name)
        except ClientError as exc:
            if str(exc.response.get("Error", {}).get("Code")) not in ("404", "NoSuchBucket", "NotFound"):
                raise
            missing.append(name)
    return missing


def buckets_ensure(names: Iterable[str], *, cors_origins: Iterable[str] = (), s3=None) -> None:
    """Create buckets that are missing, and let browsers on exactly `cors_origins` PUT parts
    and read (no origins: CORS removed). Idempotent.

    The ETag header is exposed because a browser completing a multipart upload must send back
    each part's ETag.
    """
    from botocore.exceptions import ClientError

    s3 = s3 or client()
    origins = sorted({o.rstrip("/") for o in cors_origins if o})
    for name in names:
        try:
            s3.create_bucket(Bucket=name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise
        else:
            _warm(s3, name)
        if origins:
            s3.put_bucket_cors(
                Bucket=name,
                CORSConfiguration={
                    "CORSRules": [
                        {
                            "AllowedOrigins": origins,
                            "AllowedMethods": ["GET", "PUT", "POST", "HEAD"],
                            "AllowedHeaders": ["*"],
                            "ExposeHeaders": ["ETag"],
                            "MaxAgeSeconds": 3000,
                        }
                    ]
                },
            )
        else:
            try:
                s3.delete_bucket_cors(Bucket=name)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "NoSuchCORSConfiguration":
                    raise


WARM_KEY = ".reelflow/warm"


def _warm(s3, bucket: str) -> None:
    """Write and delete one byte in a bucket just created. SeaweedFS keeps each bucket in its
    own collection and allocates that collection's volumes on its first stored byte, which
    costs the first real write a quarter of a second at rest and over a second under encoding
    load (measured); an empty object is kept in the filer and allocates nothing. Outside
    ``uploads/`` nothing acts on the key; on AWS this is one PUT and one DELETE, once."""
    s3.put_object(Bucket=bucket, Key=WARM_KEY, Body=b"\0")
    s3.delete_object(Bucket=bucket, Key=WARM_KEY)


_SIGNED_QUERY = re.compile(r"(https?://[^\s?'\"]+)\?[^\s'\"]*X-Amz-[^\s'\"]*")


def redact_presigned(text: str) -> str:
    """`text` (an ffmpeg command, a log line) with the query of every presigned URL replaced:
    a stored command must not hand out a working link to a private object."""
    return _SIGNED_QUERY.sub(r"\1?(signature removed)", text)
