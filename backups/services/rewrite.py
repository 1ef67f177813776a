"""Rewriting bytes from a good origin to a target, proven on the way: only bytes that hash to
the ledger's SHA-256 are written, and what was written is read back and checked. Used to
repair a backup copy, to heal a source and to restore. Encrypted copies are decrypted when read
(`origin_dek`) and encrypted when written (`seal`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from django.conf import settings

from backups import crypto, storage
from backups.models import ObjectVersion
from backups.services import keys
from core import s3


def _short(sha: str) -> str:
    return sha[:12] if sha else "—"


@dataclass(frozen=True)
class Sealing:
    """How to encrypt what is written to an encrypted backup copy: its own data key, wrapped."""

    dek: bytes
    metadata: dict


def sealing_of(version: ObjectVersion) -> Sealing | None:
    dek = keys.dek_of(version)
    if dek is None:
        return None
    return Sealing(dek, {crypto.META_KEK: version.kek_id, crypto.META_DEK: version.wrapped_key})


def blob_rewrite(
    *, origin: storage.Place, origin_key: str, if_match: str | None, expected_sha: str, size: int,
    target: storage.Place, target_key: str, source: bool = False, origin_dek: bytes | None = None,
    seal: Sealing | None = None, sse: bool = False,
) -> None:
    """Write `origin_key`'s bytes to `target_key` only if they hash to `expected_sha`, then read
    the written object back and check it. Replaces what is there: use it only on a copy proven
    bad, or to restore. `origin_dek` decrypts the origin (an encrypted backup copy); `seal`
    encrypts what is written (repairing an encrypted copy)."""

    def accept(digest: s3.Digest) -> None:
        if digest.sha256 != expected_sha:
            raise storage.ContentMismatch(
                f"{origin.bucket}/{origin_key} has SHA-256 {_short(digest.sha256)}, expected {_short(expected_sha)}",
                evidence={"read_sha256": digest.sha256, "expected_sha256": expected_sha},
            )

    if size <= settings.BACKUP_INLINE_MAX_BYTES:
        data, digest = storage.read_all(origin, origin_key, if_match=if_match, source=source, dek=origin_dek)
        accept(digest)
        if seal is not None:
            data = crypto.seal(seal.dek, data)
        md5 = hashlib.md5(data, usedforsecurity=False).hexdigest() if seal is not None else digest.md5
        storage.put_replace(target, target_key, data, md5=md5, metadata=seal.metadata if seal else None, sse=sse)
    else:
        # Multipart: nothing becomes visible unless `accept` passes before completion.
        plain = storage.Hasher.new()

        def passing():
            for chunk in storage.stream(origin, origin_key, if_match=if_match, source=source, dek=origin_dek):
                plain.update(chunk)
                yield chunk

        storage.stream_upload(
            crypto.encrypt(seal.dek, passing()) if seal else passing(), target, target_key,
            size_hint=crypto.sealed_size(size) if seal else size, accept=lambda _: accept(plain.digest()),
            metadata=seal.metadata if seal else None, sse=sse,
        )
    written = storage.read_digest(target, target_key, dek=seal.dek if seal else None)
    if written.sha256 != expected_sha:
        raise storage.TransferFailed(
            f"{target.bucket}/{target_key} read back with SHA-256 {_short(written.sha256)}, expected {_short(expected_sha)}",
            evidence={"read_back_sha256": written.sha256},
        )
