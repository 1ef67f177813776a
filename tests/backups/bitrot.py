"""Silent corruption on a real SeaweedFS volume: flip bytes of a stored object on disk and fix
the needle's CRC, so the server serves the damaged bytes with unchanged metadata (ETag, size),
as a store without end-to-end checksums would. Without the CRC fix SeaweedFS notices and
answers 500 on every read, which `flip_byte_on_disk(..., fix_crc=False)` also lets us test.

Needle layout (SeaweedFS volume version 3): cookie(4) id(8) size(4) | data_size(4) data ... |
crc32c(data)(4) ... ; `size` spans the body, so the checksum sits at header + 16 + size.
"""

import struct
from pathlib import Path

_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _TABLE.append(_c)


def crc32c(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def flip_byte_on_disk(data_dir: Path, original: bytes, *, offset: int = 100, fix_crc: bool = True) -> int:
    """Flip one byte of every stored needle holding `original` (incompressible, < 4 MiB).
    Returns how many needles were changed."""
    damaged = bytearray(original)
    damaged[offset] ^= 0x01
    changed = 0
    for volume in Path(data_dir).rglob("*.dat"):
        raw = volume.read_bytes()
        start = raw.find(original)
        while start >= 0:
            header = start - 20
            size = struct.unpack(">I", raw[header + 12 : header + 16])[0]
            stored_crc = struct.unpack(">I", raw[header + 16 + size : header + 20 + size])[0]
            with open(volume, "r+b") as fh:
                fh.seek(start)
                fh.write(damaged)
                if fix_crc and stored_crc == crc32c(original):
                    fh.seek(header + 16 + size)
                    fh.write(struct.pack(">I", crc32c(bytes(damaged))))
            changed += 1
            start = raw.find(original, start + 1)
    return changed
