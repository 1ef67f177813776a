"""Client-side encryption of backup copies: the backup store never sees plaintext.

- Every backup copy (one content-addressed blob) has its own random 256-bit data key (DEK).
- The DEK is wrapped (RFC 3394 AES key wrap) by a key-encryption key (KEK) from the
  environment: `BACKUP_KEK` = "<id>:<base64 of 32 bytes>" is the current one; retired ones stay
  readable through `BACKUP_KEKS_RETIRED` (comma-separated, same form) until rotation re-wraps
  their data keys (`manage.py backup_keys --rotate`). The ledger keeps the wrapped DEK and the
  KEK's id; the blob's metadata keeps them too, for a copy found again by its name.
- The blob is AES-256-GCM in segments of 1 MiB (a streamed object is never held whole):

      "RFE1" | 8 random bytes | segment 0 | segment 1 | ... (each: ciphertext + 16-byte tag)

  Segment i's nonce is the 8 random bytes + i (4 bytes, big-endian); its associated data says
  whether it is the last, so a truncated, reordered or altered blob fails authentication.
- Blob names are keyed: HMAC-SHA256 of the plaintext SHA-256 under a naming key derived from
  the KEK, so the store cannot confirm that it holds a known file.

Pure functions, no database and no S3: used from worker threads.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.keywrap import InvalidUnwrap, aes_key_unwrap, aes_key_wrap

MAGIC = b"RFE1"
HEADER = len(MAGIC) + 8
SEGMENT = 1024 * 1024
TAG = 16
ALGORITHM = "aes-256-gcm/rfe1"
META_KEK, META_DEK = "rf-kek", "rf-dek"


class KeyError_(Exception):  # noqa: N801 - not the builtin KeyError
    """A key-encryption key is missing, malformed or not the one that wrapped a data key."""


class AuthenticationFailed(Exception):
    """Ciphertext that does not authenticate: tampered with, truncated or damaged."""


@dataclass(frozen=True)
class Kek:
    id: str
    key: bytes

    @property
    def check(self) -> str:
        """What the ledger records to recognise this key later (not the key, not reversible)."""
        return hmac.new(self.key, b"reelflow backup key check", hashlib.sha256).hexdigest()

    def name_key(self) -> bytes:
        return hmac.new(self.key, b"reelflow backup blob names", hashlib.sha256).digest()


def kek_parse(value: str, *, variable: str) -> Kek:
    ident, sep, encoded = value.strip().partition(":")
    if not sep or not ident or not ident.replace("-", "").replace("_", "").isalnum():
        raise KeyError_(f"{variable} must be '<id>:<base64 of 32 random bytes>' (e.g. k2026:...), not {ident!r}:…")
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise KeyError_(f"{variable} (key {ident!r}): the key is not valid base64") from None
    if len(key) != 32:
        raise KeyError_(f"{variable} (key {ident!r}): the key is {len(key)} bytes, AES-256 needs 32")
    return Kek(ident, key)


def keks_load(current: str, retired: str = "") -> tuple[Kek | None, dict[str, Kek]]:
    """(the current KEK or None, every KEK by id) from the settings' strings."""
    keks: dict[str, Kek] = {}
    now = kek_parse(current, variable="BACKUP_KEK") if current.strip() else None
    for item in [v for v in retired.split(",") if v.strip()]:
        kek = kek_parse(item, variable="BACKUP_KEKS_RETIRED")
        keks[kek.id] = kek
    if now is not None:
        keks[now.id] = now
    return now, keks


def kek_generate(ident: str) -> str:
    """A new KEK in the form BACKUP_KEK takes."""
    return f"{ident}:{base64.b64encode(os.urandom(32)).decode()}"


def dek_new() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def dek_wrap(kek: Kek, dek: bytes) -> str:
    return base64.b64encode(aes_key_wrap(kek.key, dek)).decode()


def dek_unwrap(kek: Kek, wrapped: str) -> bytes:
    try:
        return aes_key_unwrap(kek.key, base64.b64decode(wrapped))
    except (InvalidUnwrap, binascii.Error, ValueError):
        raise KeyError_(f"key {kek.id!r} does not unwrap this data key: it is not the key that wrapped it") from None


def blob_name(kek: Kek, sha256: str) -> str:
    return hmac.new(kek.name_key(), sha256.encode(), hashlib.sha256).hexdigest()


def sealed_size(size: int) -> int:
    segments = max(1, -(-size // SEGMENT))
    return HEADER + size + segments * TAG


def _nonce(prefix: bytes, index: int) -> bytes:
    return prefix + struct.pack(">I", index)


def _aad(final: bool) -> bytes:
    return MAGIC + (b"\x01" if final else b"\x00")


def _segments(chunks: Iterator[bytes], size: int) -> Iterator[tuple[bytes, bool]]:
    """Fixed-size segments of a stream, each with whether it is the last (one lookahead)."""
    buffer = bytearray()
    pending: bytes | None = None
    for chunk in chunks:
        buffer += chunk
        while len(buffer) > size:
            if pending is not None:
                yield pending, False
            pending = bytes(buffer[:size])
            del buffer[:size]
    if buffer:
        if pending is not None:
            yield pending, False
        yield bytes(buffer), True
    elif pending is not None:
        yield pending, True
    else:
        yield b"", True


def encrypt(dek: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The sealed form of a plaintext stream, a segment at a time."""
    aead = AESGCM(dek)
    prefix = os.urandom(8)
    yield MAGIC + prefix
    for index, (segment, final) in enumerate(_segments(chunks, SEGMENT)):
        yield aead.encrypt(_nonce(prefix, index), segment, _aad(final))


def decrypt(dek: bytes, chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The plaintext of a sealed stream; AuthenticationFailed at the first bad segment."""
    aead = AESGCM(dek)
    stream = iter(chunks)
    head = bytearray()
    for chunk in stream:
        head += chunk
        if len(head) >= HEADER:
            break
    if len(head) < HEADER or bytes(head[:4]) != MAGIC:
        raise AuthenticationFailed("not a Reelflow encrypted copy (bad header)")
    prefix = bytes(head[4:HEADER])

    def rest() -> Iterator[bytes]:
        if len(head) > HEADER:
            yield bytes(head[HEADER:])
        yield from stream

    index = 0
    for segment, final in _segments(rest(), SEGMENT + TAG):
        try:
            yield aead.decrypt(_nonce(prefix, index), segment, _aad(final))
        except InvalidTag:
            raise AuthenticationFailed(f"segment {index} fails authentication (tampered, truncated or damaged)") from None
        index += 1


def seal(dek: bytes, data: bytes) -> bytes:
    return b"".join(encrypt(dek, iter([data])))
