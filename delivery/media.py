"""Serving a published package's files from the private media bucket: manifests as text (read
once, then cached: a published package never changes), media files by byte range, streamed.

DASH's on-demand profile and HLS byte-range playlists both address one file per rendition by
range, so a player asks for `Range: bytes=a-b` and gets 206 with exactly those bytes; the
range is passed to S3 as is, so nothing is read that was not asked for.
"""

import re
from collections.abc import AsyncIterator

from asgiref.sync import sync_to_async
from botocore.exceptions import ClientError
from django.conf import settings
from django.core.cache import cache

from core import s3

TEXT_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".mpd": "application/dash+xml",
    ".vtt": "text/vtt; charset=utf-8",
}
MEDIA_TYPES = {".mp4": "video/mp4", ".m4s": "video/iso.segment", ".m4a": "audio/mp4", ".jpg": "image/jpeg",
               ".webm": "video/webm", ".ts": "video/mp2t"}  # fmt: skip
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CHUNK = 256 * 1024
_TEXT_CACHE_SECONDS = 3600
_NOT_FOUND = {"NoSuchKey", "404", "NotFound"}


class FileMissing(LookupError):
    pass


class RangeInvalid(ValueError):
    pass


def suffix(name: str) -> str:
    return name[name.rfind(".") :].lower() if "." in name else ""


def text_read(folder: str, name: str) -> str:
    key = f"{folder}/{name}"

    def read() -> str:
        try:
            body = s3.client().get_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key)["Body"]
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NOT_FOUND:
                raise FileMissing(name) from exc
            raise
        try:
            return body.read().decode("utf-8")
        finally:
            body.close()

    return cache.get_or_set(f"delivery:text:{key}", read, _TEXT_CACHE_SECONDS)


def range_check(header: str) -> str | None:
    """The Range header to pass to S3 (one range of bytes), None for the whole file; several
    ranges or another unit are refused (players ask for one range at a time)."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or match.groups() == ("", ""):
        raise RangeInvalid("only one range of bytes is served: Range: bytes=first-last")
    first, last = match.groups()
    if first and last and int(last) < int(first):
        raise RangeInvalid("the range's last byte is before its first")
    return header.strip()


def media_open(folder: str, name: str, *, byte_range: str | None, head: bool = False) -> dict:
    """The object's (or the range's) headers and, unless `head`, its body stream."""
    params = {"Bucket": settings.S3_BUCKET_MEDIA, "Key": f"{folder}/{name}"}
    if byte_range:
        params["Range"] = byte_range
    client = s3.client()
    try:
        answer = client.head_object(**params) if head and not byte_range else client.get_object(**params)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code")
        if code in _NOT_FOUND:
            raise FileMissing(name) from exc
        if code in ("InvalidRange", "416"):
            raise RangeInvalid("the range is past the end of the file") from exc
        raise
    if head and byte_range:
        answer["Body"].close()
        answer["Body"] = None
    return answer


async def body_chunks(body) -> AsyncIterator[bytes]:
    """An S3 body as an async stream, so daphne sends it chunk by chunk without holding the file."""
    read = sync_to_async(body.read, thread_sensitive=False)
    try:
        while chunk := await read(_CHUNK):
            yield chunk
    finally:
        await sync_to_async(body.close, thread_sensitive=False)()
