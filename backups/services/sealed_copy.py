"""Copying with client-side encryption: the bytes pass through Reelflow (never a server-side
copy of plaintext), hashed as plaintext for the ledger and the listed ETag, and written as
ciphertext under a keyed name with the wrapped data key in the copy's metadata. Runs in a
worker thread: S3 only."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backups import crypto, storage
from backups.models import CopyMethod
from core import s3

if TYPE_CHECKING:
    from backups.services.copying import CopySpec

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sealed:
    """An encrypted copy's wrapped data key, for the ledger."""

    kek_id: str
    wrapped_key: str


def _sealed_found(spec: CopySpec, key: str) -> Sealed:
    """The wrapped data key of an encrypted copy that is already there (from its metadata)."""
    found = storage.head(spec.dst, key) or {}
    meta = {k.lower(): v for k, v in (found.get("Metadata") or {}).items()}
    if not meta.get(crypto.META_DEK) or not meta.get(crypto.META_KEK):
        raise storage.TransferFailed(f"encrypted copy {spec.dst.bucket}/{key} carries no wrapped data key")
    return Sealed(meta[crypto.META_KEK], meta[crypto.META_DEK])


def copy_sealed(spec: CopySpec) -> tuple[str, s3.Digest, str, Sealed]:
    """Copy through us, encrypted with a new data key: the store only ever gets ciphertext.
    The plaintext is hashed (SHA-256 for the ledger, MD5 against the listed ETag) as it passes."""
    what = f"{spec.src.bucket}/{spec.key}"
    kek = spec.kek
    dek = crypto.dek_new()
    sealed = Sealed(kek.id, crypto.dek_wrap(kek, dek))
    meta = {crypto.META_KEK: sealed.kek_id, crypto.META_DEK: sealed.wrapped_key}
    if spec.size <= spec.inline_max:
        pinned = {"version_id": spec.s3_version_id} if spec.s3_version_id else {}
        data, digest = storage.read_all(spec.src, spec.key, if_match=spec.etag, source=True, **pinned)
        storage.check_against_listing(digest, etag=spec.etag, size=spec.size, what=what)
        key = storage.sealed_blob_key(spec.dst_prefix, crypto.blob_name(kek, digest.sha256))
        body = crypto.seal(dek, data)
        md5 = hashlib.md5(body, usedforsecurity=False).hexdigest()
        if storage.put_once(spec.dst, key, body, md5=md5, metadata=meta, lock=spec.lock):
            return CopyMethod.INLINE, digest, key, sealed
        return CopyMethod.DEDUPLICATED, digest, key, _sealed_found(spec, key)
    plain = storage.Hasher.new()

    def passing() -> Iterator[bytes]:
        pinned = {"version_id": spec.s3_version_id} if spec.s3_version_id else {}
        for chunk in storage.stream(spec.src, spec.key, if_match=spec.etag, source=True, **pinned):
            plain.update(chunk)
            yield chunk

    staging = f"{spec.dst_prefix}staging/task-{spec.task_id}"
    stored, _ = storage.stream_upload(
        crypto.encrypt(dek, passing()), spec.dst, staging, size_hint=crypto.sealed_size(spec.size), metadata=meta,
        accept=lambda _: storage.check_against_listing(plain.digest(), etag=spec.etag, size=spec.size, what=what),
    )
    digest = plain.digest()
    try:
        key = storage.sealed_blob_key(spec.dst_prefix, crypto.blob_name(kek, digest.sha256))
        if storage.head(spec.dst, key) is not None:
            return CopyMethod.DEDUPLICATED, digest, key, _sealed_found(spec, key)
        staged = storage.head(spec.dst, staging) or {}
        copied = storage.server_copy(spec.dst, staging, spec.dst, key, size=stored.size, metadata=meta, lock=spec.lock)
        if copied not in (stored.md5, s3.etag_clean(staged.get("ETag"))):
            storage.delete(spec.dst, key)
            raise storage.TransferFailed(f"copy of the staged {what} has ETag {copied}", evidence={"copy_etag": copied})
        return CopyMethod.STREAMED, digest, key, sealed
    finally:
        try:
            storage.delete(spec.dst, staging)
        except storage.StorageError:
            logger.warning("could not delete staging object %s", staging)
