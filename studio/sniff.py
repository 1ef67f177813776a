"""Is this a video? By its file name and by its first bytes (container signatures).

The browser runs the same checks (static/js/studio-upload.js) before a byte is sent; the
server checks the name when the upload starts and the stored object's first bytes when it
completes, since a browser can be made to say anything.
"""

from pathlib import PurePosixPath

# Bytes read to check the container: enough for three MPEG-TS packets (188 or 192 bytes).
HEAD_BYTES = 1024

VIDEO_EXTENSIONS = frozenset(
    {
        "mp4", "m4v", "mov", "qt", "3gp", "3g2", "mkv", "webm", "avi", "ts", "m2ts", "mts",
        "mpg", "mpeg", "m2v", "vob", "flv", "wmv", "asf", "ogv", "ogg", "mxf", "dv", "y4m",
    }
)  # fmt: skip

# ISO BMFF (MP4, MOV, 3GP) boxes that may come first in a file.
_ISO_FIRST_BOXES = (b"ftyp", b"moov", b"mdat", b"free", b"skip", b"wide", b"pnot", b"uuid")


def extension_is_video(filename: str) -> bool:
    return PurePosixPath(filename.replace("\\", "/")).suffix.lower().lstrip(".") in VIDEO_EXTENSIONS


def container_of(head: bytes) -> str | None:
    """The container the first bytes announce ("mp4", "matroska", ...), or None."""
    if len(head) >= 8 and head[4:8] in _ISO_FIRST_BOXES:
        return "mp4"
    if head.startswith(b"\x1a\x45\xdf\xa3"):
        return "matroska"
    if head.startswith(b"RIFF") and head[8:12] == b"AVI ":
        return "avi"
    if head.startswith(b"\x00\x00\x01\xba") or head.startswith(b"\x00\x00\x01\xb3"):
        return "mpeg-ps"
    if _sync_bytes(head, offset=0, packet=188):
        return "mpeg-ts"
    if _sync_bytes(head, offset=4, packet=192):
        return "m2ts"  # 192-byte packets: a 4-byte timecode before each sync byte
    if head.startswith(b"FLV\x01"):
        return "flv"
    if head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11"):
        return "asf"
    if head.startswith(b"OggS"):
        return "ogg"
    if head.startswith(b"\x06\x0e\x2b\x34\x02\x05\x01\x01"):
        return "mxf"
    if head.startswith(b"YUV4MPEG2"):
        return "y4m"
    if head.startswith(b"\x1f\x07\x00"):
        return "dv"
    return None


def _sync_bytes(head: bytes, *, offset: int, packet: int, packets: int = 3) -> bool:
    """MPEG transport streams repeat the sync byte 0x47 every packet; one alone proves nothing
    ("G" starts plenty of files), so the first `packets` must all have it."""
    positions = [offset + n * packet for n in range(packets)]
    if len(head) <= positions[1]:
        return False
    return all(head[p : p + 1] == b"\x47" for p in positions if p < len(head))
