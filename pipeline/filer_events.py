"""SeaweedFS filer events, as its `[notification.webhook]` queue posts them.

SeaweedFS has no S3 bucket notifications; its filer publishes every metadata change, and the
webhook queue POSTs each as JSON with a bearer token. See devservices/seaweed.py for how it is
configured and for a sample body. This module only turns such a body into object events.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import PurePosixPath
from typing import Any

BUCKETS_ROOT = "/buckets/"
MULTIPART_STAGING = ".uploads/"


def _b64(value: Any) -> bytes | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _entry_etag(entry: dict) -> str | None:
    extended = entry.get("extended") or {}
    raw = _b64(extended.get("Seaweed-X-Amz-ETag"))
    if raw:
        return raw.decode("utf-8", "replace").strip('"')
    md5 = _b64((entry.get("attributes") or {}).get("md5"))
    if md5 and len(md5) == 16:
        return md5.hex()
    return None


def _entry_size(entry: dict) -> int | None:
    attributes = entry.get("attributes")
    if attributes is None:
        return None
    if "file_size" in attributes:
        return int(attributes["file_size"])
    chunks = entry.get("chunks") or []
    if chunks:
        return max(int(c.get("offset", 0)) + int(c.get("size", 0)) for c in chunks)
    content = _b64(entry.get("content"))
    return len(content) if content is not None else 0  # zero values are omitted in the JSON


def _entry_mtime(entry: dict) -> float | None:
    attributes = entry.get("attributes") or {}
    if "mtime" not in attributes:
        return None
    return int(attributes["mtime"]) + int(attributes.get("mtime_ns", 0)) / 1e9


def _split_bucket_path(path: str) -> tuple[str, str] | None:
    if not path.startswith(BUCKETS_ROOT):
        return None
    bucket, _, key = path[len(BUCKETS_ROOT) :].partition("/")
    if not bucket or bucket.startswith(".") or not key or key.endswith("/"):
        return None
    if key.startswith(MULTIPART_STAGING):
        return None
    return bucket, key


def _normalized(event: str, path: str, entry: dict) -> dict | None:
    if entry.get("is_directory"):
        return None
    where = _split_bucket_path(path)
    if where is None:
        return None
    return {
        "event": event,
        "bucket": where[0],
        "key": where[1],
        "size": _entry_size(entry),
        "etag": _entry_etag(entry),
        "mtime": _entry_mtime(entry),
    }


def parse_filer_event(body: dict) -> list[dict]:
    """Normalize one filer webhook body into S3-like object events.

    Returns a list (a rename gives a delete and a create; internals give nothing) of
    {"event": "created"|"deleted", "bucket", "key", "size": int|None, "etag": str|None,
    "mtime": float|None}. An overwrite or metadata update is reported as "created" (as S3's
    ObjectCreated is); consumers dedupe on bucket+key+etag.
    """
    if not isinstance(body, dict):
        return []
    message = body.get("message") or body.get("message_data") or {}
    key = body.get("key") or ""
    old, new = message.get("old_entry"), message.get("new_entry")
    events: list[dict] = []
    old_path = key if old else None
    new_path = None
    if new:
        parent = message.get("new_parent_path") or str(PurePosixPath(key).parent)
        new_path = str(PurePosixPath(parent) / new.get("name", ""))
    if old and old_path != new_path:
        events.append(_normalized("deleted", old_path, old))
    if new:
        events.append(_normalized("created", new_path, new))
    return [e for e in events if e is not None]
