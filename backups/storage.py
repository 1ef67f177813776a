"""How backups move and check bytes, on top of core.s3 (the one S3 module).

Everything here is S3 I/O only (no database), so it runs in worker threads. Errors are typed:
`SourceChanged`, `ObjectMissing`, `AccessDenied`, `TransferFailed` (transient) and
`ContentMismatch` (the bytes do not match what they must be). Callers classify with these.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from django.conf import settings

from backups import crypto
from core import s3

READ_CHUNK = 1024 * 1024
# S3 limits: CopyObject up to 5 GiB, at most 10,000 parts, parts of at least 5 MiB.
MAX_SINGLE_COPY = 5 * 1024**3
MAX_PARTS = 10_000
MIN_PART = 5 * 1024**2

_SETTING_REF = re.compile(r"^\$\{(S3_BUCKET_[A-Z0-9_]+)\}$")


class StorageError(Exception):
    """Base of the typed errors below; `detail` is short and readable. `side` is "source" when
    the error came from reading the protected object (not from the backup store)."""

    side = ""

    def __init__(self, detail: str, *, evidence: dict | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.evidence = evidence or {}


class SourceChanged(StorageError):
    """The object is no longer the version we meant to read (412 on If-Match, or gone)."""


class ObjectMissing(StorageError):
    pass


class AccessDenied(StorageError):
    pass


class TransferFailed(StorageError):
    """A network or server error, or bytes that arrived damaged: worth another attempt."""


class ContentMismatch(StorageError):
    """Bytes read do not match the digest or ETag they must have."""


class EndpointMisconfigured(AccessDenied):
    """A credential environment variable the endpoint names is not set."""


_MISSING_CODES = {"404", "NoSuchKey", "NotFound", "NoSuchVersion"}
_DENIED_CODES = {"403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled", "NoSuchBucket"}
_PRECONDITION_CODES = {"412", "PreconditionFailed"}


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: Exception, *, what: str, missing_means_changed: bool = False) -> StorageError:
    """A botocore exception as one of ours, keeping the S3 error code as evidence."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        evidence = {"s3_error": code, "http_status": status}
        if code in _PRECONDITION_CODES:
            return SourceChanged(f"{what}: the object changed (If-Match failed)", evidence=evidence)
        if code in _MISSING_CODES:
            if missing_means_changed:
                return SourceChanged(f"{what}: the object was deleted", evidence=evidence)
            return ObjectMissing(f"{what}: no such object", evidence=evidence)
        if code in _DENIED_CODES:
            return AccessDenied(f"{what}: {code}", evidence=evidence)
        return TransferFailed(f"{what}: {code or 'error'} (HTTP {status})", evidence=evidence)
    if isinstance(exc, BotoCoreError | BotoConnectionError | OSError):
        return TransferFailed(f"{what}: {type(exc).__name__}: {exc}"[:300], evidence={"error": type(exc).__name__})
    raise exc


# --------------------------------------------------------------------------- endpoints


@dataclass(frozen=True)
class Place:
    """A resolved bucket on a resolved endpoint.

    The client is made once, in the thread that resolves the place, and shared by the worker
    threads: boto3 clients are safe to use from many threads (not to create concurrently),
    and a fresh client per thread costs a second of endpoint-rule evaluation on first use.
    """

    target: s3.S3Target
    bucket: str
    shared_client: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def resolve(cls, target: s3.S3Target, bucket: str) -> Place:
        return cls(target=target, bucket=bucket, shared_client=s3.client(target))

    @property
    def client(self):
        return self.shared_client if self.shared_client is not None else s3.client(self.target)

    def same_server_as(self, other: Place) -> bool:
        """Server-side copy needs one server and one identity that can read both buckets."""
        return (
            self.target.endpoint_url.rstrip("/") == other.target.endpoint_url.rstrip("/")
            and self.target.access_key == other.target.access_key
        )


def bucket_resolve(value: str) -> str:
    """A bucket name, or "${S3_BUCKET_...}" naming a setting (so the data follows settings)."""
    match = _SETTING_REF.match(value.strip())
    if match:
        return getattr(settings, match.group(1))
    return value.strip()


def endpoint_target(endpoint) -> s3.S3Target:
    """The S3Target of a StorageEndpoint row, reading credentials from the variables it names."""

    def secret(env_name: str, fallback: str) -> str:
        if not env_name:
            return fallback
        value = os.environ.get(env_name)
        if not value:
            raise EndpointMisconfigured(
                f"endpoint {endpoint.name!r}: environment variable {env_name} is not set",
                evidence={"endpoint": endpoint.name, "variable": env_name},
            )
        return value

    return s3.S3Target(
        endpoint_url=endpoint.url or settings.S3_ENDPOINT_URL,
        access_key=secret(endpoint.access_key_env, settings.S3_ACCESS_KEY),
        secret_key=secret(endpoint.secret_key_env, settings.S3_SECRET_KEY),
        region=endpoint.region or settings.S3_REGION,
    )


def blob_key(prefix: str, sha256: str) -> str:
    """Content-addressed: the key names the bytes, so a copy is never overwritten by another."""
    return f"{prefix}sha256/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def sealed_blob_key(prefix: str, name: str) -> str:
    """An encrypted copy: named by a keyed hash of its plaintext's SHA-256 (crypto.blob_name)."""
    return f"{prefix}enc/{name[:2]}/{name[2:4]}/{name}"


# --------------------------------------------------------------------------- reading


@dataclass
class Hasher:
    sha: hashlib._Hash
    md5: hashlib._Hash | None
    size: int = 0

    @classmethod
    def new(cls, *, md5: bool = True) -> Hasher:
        return cls(sha=hashlib.sha256(), md5=hashlib.md5(usedforsecurity=False) if md5 else None)

    def update(self, chunk: bytes) -> None:
        self.sha.update(chunk)
        if self.md5 is not None:
            self.md5.update(chunk)
        self.size += len(chunk)

    def digest(self) -> s3.Digest:
        return s3.Digest(sha256=self.sha.hexdigest(), size=self.size, md5=self.md5.hexdigest() if self.md5 else "")


def head(place: Place, key: str) -> dict | None:
    """HEAD, or None when the object does not exist."""
    try:
        return place.client.head_object(Bucket=place.bucket, Key=key)
    except ClientError as exc:
        if error_code(exc) in _MISSING_CODES:
            return None
        raise translate(exc, what=f"HEAD {place.bucket}/{key}") from exc
    except (BotoCoreError, OSError) as exc:
        raise translate(exc, what=f"HEAD {place.bucket}/{key}") from exc


def _get(place: Place, key: str, *, if_match: str | None, source: bool, version_id: str | None = None):
    params = {"Bucket": place.bucket, "Key": key}
    if if_match:
        params["IfMatch"] = f'"{if_match}"'
    if version_id:
        params["VersionId"] = version_id
    try:
        return place.client.get_object(**params)
    except (ClientError, BotoCoreError, OSError) as exc:
        error = translate(exc, what=f"GET {place.bucket}/{key}", missing_means_changed=source)
        error.side = "source" if source else ""
        raise error from exc


def stream(
    place: Place, key: str, *, if_match: str | None = None, source: bool = False, chunk: int = READ_CHUNK,
    dek: bytes | None = None, version_id: str | None = None,
) -> Iterator[bytes]:
    """The object's bytes in chunks (If-Match, or a version id on a versioned bucket, pins the
    version we listed). With `dek`, the object is an encrypted copy: its plaintext, or
    ContentMismatch if it fails authentication."""
    if dek is not None:
        yield from _decrypted(place, key, dek, stream(place, key, if_match=if_match, source=source, chunk=chunk,
                                                      version_id=version_id))  # fmt: skip
        return
    pinned = {"version_id": version_id} if version_id else {}
    body = _get(place, key, if_match=if_match, source=source, **pinned)["Body"]
    try:
        while True:
            try:
                data = body.read(chunk)
            except (BotoCoreError, OSError) as exc:
                error = translate(exc, what=f"reading {place.bucket}/{key}")
                error.side = "source" if source else ""
                raise error from exc
            if not data:
                return
            yield data
    finally:
        body.close()


def _decrypted(place: Place, key: str, dek: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield from crypto.decrypt(dek, chunks)
    except crypto.AuthenticationFailed as exc:
        raise ContentMismatch(
            f"{place.bucket}/{key} fails decryption: {exc}", evidence={"authentication": "failed"}
        ) from None


def read_digest(
    place: Place, key: str, *, if_match: str | None = None, source: bool = False, md5: bool = True,
    dek: bytes | None = None,
) -> s3.Digest:
    """Stream and hash an object (its plaintext, with `dek`). Verification passes md5=False: it
    compares SHA-256 only, and MD5 would cost a second pass of CPU over every byte."""
    hasher = Hasher.new(md5=md5)
    for chunk in stream(place, key, if_match=if_match, source=source, dek=dek):
        hasher.update(chunk)
    return hasher.digest()


def read_all(
    place: Place, key: str, *, if_match: str | None = None, source: bool = False, dek: bytes | None = None,
    version_id: str | None = None,
) -> tuple[bytes, s3.Digest]:
    hasher = Hasher.new()
    parts = []
    for chunk in stream(place, key, if_match=if_match, source=source, dek=dek, version_id=version_id):
        hasher.update(chunk)
        parts.append(chunk)
    return b"".join(parts), hasher.digest()


def check_against_listing(digest: s3.Digest, *, etag: str, size: int, what: str) -> None:
    """Bytes read must have the listed size, and the listed ETag's MD5 when it is one.

    A multipart ETag is an MD5 of part MD5s, never the object's MD5: it is not compared.
    """
    if digest.size != size:
        raise ContentMismatch(
            f"{what}: read {digest.size} bytes, the listing says {size}",
            evidence={"read_size": digest.size, "listed_size": size},
        )
    if not s3.is_multipart_etag(etag) and digest.md5 != etag:
        raise ContentMismatch(
            f"{what}: the bytes' MD5 {digest.md5} is not the object's ETag {etag}",
            evidence={"read_md5": digest.md5, "etag": etag, "sha256_read": digest.sha256},
        )


# --------------------------------------------------------------------------- writing


def lock_params(lock: tuple[str, datetime] | None, sse: bool = False) -> dict:
    """Parameters of a write: S3 Object Lock (mode, retain until), and server-side encryption."""
    params = {"ObjectLockMode": lock[0], "ObjectLockRetainUntilDate": lock[1]} if lock else {}
    return {**params, "ServerSideEncryption": "AES256"} if sse else params


def put_once(
    place: Place, key: str, data: bytes, *, md5: str, metadata: dict | None = None, lock: tuple | None = None,
    sse: bool = False,
) -> bool:
    """Write `data` at `key` unless the key exists (If-None-Match: *). True if written.

    The ETag the server returns is the MD5 of what it received; a different one means the bytes
    were damaged on the way and the (wrong) object is removed again.
    """
    try:
        response = place.client.put_object(
            Bucket=place.bucket, Key=key, Body=data, IfNoneMatch="*", **({"Metadata": metadata} if metadata else {}),
            **lock_params(lock, sse),
        )
    except ClientError as exc:
        if error_code(exc) in _PRECONDITION_CODES:
            return False
        raise translate(exc, what=f"PUT {place.bucket}/{key}") from exc
    except (BotoCoreError, OSError) as exc:
        raise translate(exc, what=f"PUT {place.bucket}/{key}") from exc
    written = s3.etag_clean(response.get("ETag"))
    if written != md5:
        delete(place, key)
        raise TransferFailed(
            f"PUT {place.bucket}/{key}: the server stored MD5 {written}, we sent {md5}",
            evidence={"sent_md5": md5, "stored_etag": written},
        )
    return True


def put_replace(
    place: Place, key: str, data: bytes, *, md5: str, metadata: dict | None = None, sse: bool = False
) -> None:
    """Write `data` at `key` whether or not it exists (restores, repairs of a proven-bad copy)."""
    try:
        response = place.client.put_object(
            Bucket=place.bucket, Key=key, Body=data, **({"Metadata": metadata} if metadata else {}),
            **lock_params(None, sse),
        )
    except (ClientError, BotoCoreError, OSError) as exc:
        raise translate(exc, what=f"PUT {place.bucket}/{key}") from exc
    written = s3.etag_clean(response.get("ETag"))
    if written != md5:
        raise TransferFailed(
            f"PUT {place.bucket}/{key}: the server stored MD5 {written}, we sent {md5}",
            evidence={"sent_md5": md5, "stored_etag": written},
        )


def delete(place: Place, key: str, *, versions: bool = False) -> None:
    """Delete an object; with `versions` (a versioned, Object Lock bucket) every version of it,
    which the store refuses (AccessDenied) while one is locked or on legal hold."""
    try:
        if not versions:
            place.client.delete_object(Bucket=place.bucket, Key=key)
            return
        listing = place.client.list_object_versions(Bucket=place.bucket, Prefix=key)
        for item in (listing.get("Versions") or []) + (listing.get("DeleteMarkers") or []):
            if item["Key"] == key:
                place.client.delete_object(Bucket=place.bucket, Key=key, VersionId=item["VersionId"])
    except (ClientError, BotoCoreError, OSError) as exc:
        raise translate(exc, what=f"DELETE {place.bucket}/{key}") from exc


def part_size_for(size: int) -> int:
    """The configured part size, raised so `size` fits in 10,000 parts."""
    part = max(settings.BACKUP_PART_BYTES, MIN_PART)
    while size > part * MAX_PARTS:
        part *= 2
    return part


def _rechunk(chunks: Iterator[bytes], size: int) -> Iterator[bytes]:
    buffer = bytearray()
    for chunk in chunks:
        buffer += chunk
        while len(buffer) >= size:
            yield bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        yield bytes(buffer)


def stream_upload(
    chunks: Iterator[bytes],
    place: Place,
    key: str,
    *,
    size_hint: int,
    only_if_absent: bool = False,
    accept: Callable[[s3.Digest], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    metadata: dict | None = None,
    sse: bool = False,
) -> tuple[s3.Digest, bool]:
    """Upload a stream as a multipart object, hashing as the bytes pass.

    Each part's returned ETag is checked against the MD5 we computed for it. `accept(digest)`
    runs before completing and may raise: the upload is then aborted, so nothing is written
    (a restore never replaces a good object with bad bytes). Returns (digest, written);
    written is False when `only_if_absent` and the key already existed.
    """
    client = place.client
    hasher = Hasher.new()
    try:
        upload_id = client.create_multipart_upload(
            Bucket=place.bucket, Key=key, **({"Metadata": metadata} if metadata else {}), **lock_params(None, sse)
        )["UploadId"]
    except (ClientError, BotoCoreError, OSError) as exc:
        raise translate(exc, what=f"starting upload {place.bucket}/{key}") from exc
    parts = []
    try:
        for number, part in enumerate(_rechunk(chunks, part_size_for(size_hint)), start=1):
            hasher.update(part)
            part_md5 = hashlib.md5(part, usedforsecurity=False).hexdigest()
            try:
                etag = s3.etag_clean(
                    client.upload_part(Bucket=place.bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=part)[
                        "ETag"
                    ]
                )
            except (ClientError, BotoCoreError, OSError) as exc:
                raise translate(exc, what=f"uploading part {number} of {place.bucket}/{key}") from exc
            if etag != part_md5:
                raise TransferFailed(
                    f"part {number} of {place.bucket}/{key} arrived damaged (MD5 {etag}, sent {part_md5})",
                    evidence={"part": number, "sent_md5": part_md5, "stored_etag": etag},
                )
            parts.append({"ETag": f'"{etag}"', "PartNumber": number})
            if on_progress:
                on_progress(len(part))
        digest = hasher.digest()
        if accept:
            accept(digest)
        if not parts:
            # Empty objects take the one-request path; an empty stream here is a short read.
            raise ContentMismatch(f"{place.bucket}/{key}: the stream was empty", evidence={"read_size": 0})
        params = {"Bucket": place.bucket, "Key": key, "UploadId": upload_id, "MultipartUpload": {"Parts": parts}}
        if only_if_absent:
            params["IfNoneMatch"] = "*"
        try:
            client.complete_multipart_upload(**params)
        except ClientError as exc:
            if only_if_absent and error_code(exc) in _PRECONDITION_CODES:
                client.abort_multipart_upload(Bucket=place.bucket, Key=key, UploadId=upload_id)
                upload_id = None
                return digest, False
            raise translate(exc, what=f"completing {place.bucket}/{key}") from exc
        upload_id = None
        return digest, True
    finally:
        if upload_id is not None:
            try:
                client.abort_multipart_upload(Bucket=place.bucket, Key=key, UploadId=upload_id)
            except (ClientError, BotoCoreError, OSError):
                # Left behind: the run's cleanup aborts stale uploads under the staging prefix.
                pass


def server_copy(
    src: Place, src_key: str, dst: Place, dst_key: str, *, size: int, if_match: str | None = None,
    metadata: dict | None = None, lock: tuple | None = None, sse: bool = False,
) -> str:
    """Copy inside one server (no bytes through us); returns the new object's ETag. With
    `metadata`, the copy carries exactly that metadata."""
    source = {"Bucket": src.bucket, "Key": src_key}
    client = dst.client
    meta = {**({"Metadata": metadata} if metadata else {}), **lock_params(lock, sse)}
    try:
        if size <= MAX_SINGLE_COPY:
            params = {"Bucket": dst.bucket, "Key": dst_key, "CopySource": source, **meta}
            if metadata:
                params["MetadataDirective"] = "REPLACE"
            if if_match:
                params["CopySourceIfMatch"] = f'"{if_match}"'
            return s3.etag_clean(client.copy_object(**params)["CopyObjectResult"]["ETag"])
        upload_id = client.create_multipart_upload(Bucket=dst.bucket, Key=dst_key, **meta)["UploadId"]
        part = part_size_for(size)
        parts = []
        try:
            for number, start in enumerate(range(0, size, part), start=1):
                params = {
                    "Bucket": dst.bucket, "Key": dst_key, "UploadId": upload_id, "PartNumber": number,
                    "CopySource": source, "CopySourceRange": f"bytes={start}-{min(start + part, size) - 1}",
                }
                if if_match:
                    params["CopySourceIfMatch"] = f'"{if_match}"'
                etag = client.upload_part_copy(**params)["CopyPartResult"]["ETag"]
                parts.append({"ETag": etag, "PartNumber": number})
            result = client.complete_multipart_upload(
                Bucket=dst.bucket, Key=dst_key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            client.abort_multipart_upload(Bucket=dst.bucket, Key=dst_key, UploadId=upload_id)
            raise
        return s3.etag_clean(result["ETag"])
    except (ClientError, BotoCoreError, OSError) as exc:
        raise translate(exc, what=f"server copy to {dst.bucket}/{dst_key}", missing_means_changed=True) from exc


def list_pages(place: Place, prefix: str, *, start_after: str = "", page_size: int = 1000) -> Iterator[list[dict]]:
    """Pages of a listing, streamed: never the whole listing in memory."""
    params = {"Bucket": place.bucket, "Prefix": prefix, "MaxKeys": page_size}
    if start_after:
        params["StartAfter"] = start_after
    client = place.client
    while True:
        try:
            page = client.list_objects_v2(**params)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise translate(exc, what=f"listing {place.bucket}/{prefix}") from exc
        contents = page.get("Contents") or []
        if contents:
            yield contents
        if not page.get("IsTruncated"):
            return
        params.pop("StartAfter", None)
        params["ContinuationToken"] = page["NextContinuationToken"]


def stale_uploads_abort(place: Place, prefix: str, *, older_than) -> int:
    """Abort multipart uploads under `prefix` started before `older_than` (left by a process
    that died mid-copy; younger ones may belong to a live helper)."""
    aborted = 0
    try:
        uploads = place.client.list_multipart_uploads(Bucket=place.bucket, Prefix=prefix).get("Uploads") or []
        for upload in uploads:
            if upload.get("Initiated") and upload["Initiated"] > older_than:
                continue
            place.client.abort_multipart_upload(Bucket=place.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
            aborted += 1
    except (ClientError, BotoCoreError, OSError) as exc:
        raise translate(exc, what=f"cleaning uploads under {place.bucket}/{prefix}") from exc
    return aborted
