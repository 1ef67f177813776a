"""S3 features some stores have and Reelflow uses when they are there: Object Lock (retention,
legal holds) and versioned buckets (ListObjectVersions). S3 I/O only, typed errors as in
backups.storage."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from botocore.exceptions import BotoCoreError, ClientError

from backups.storage import _DENIED_CODES, Place, error_code, translate


def lock_enabled(place: Place) -> bool:
    """Whether the bucket has S3 Object Lock enabled (False when the store has no such API)."""
    try:
        found = place.client.get_object_lock_configuration(Bucket=place.bucket)
    except ClientError as exc:
        if error_code(exc) in _DENIED_CODES - {"NoSuchBucket"}:
            raise translate(exc, what=f"object lock of {place.bucket}") from exc
        return False
    except (BotoCoreError, OSError) as exc:
        raise translate(exc, what=f"object lock of {place.bucket}") from exc
    return (found.get("ObjectLockConfiguration") or {}).get("ObjectLockEnabled") == "Enabled"


def legal_hold_put(place: Place, key: str, *, on: bool) -> None:
    try:
        place.client.put_object_legal_hold(Bucket=place.bucket, Key=key, LegalHold={"Status": "ON" if on else "OFF"})
    except (ClientError, BotoCoreError, OSError) as exc:
        raise translate(exc, what=f"legal hold on {place.bucket}/{key}") from exc


def versioning_enabled(place: Place) -> bool:
    """Whether the bucket keeps versions (then every version is listed, not just the latest)."""
    try:
        return place.client.get_bucket_versioning(Bucket=place.bucket).get("Status") == "Enabled"
    except (ClientError, BotoCoreError, OSError) as exc:
        raise translate(exc, what=f"versioning of {place.bucket}") from exc


def list_version_pages(place: Place, prefix: str, *, after: str = "", page_size: int = 1000) -> Iterator[list[list[dict]]]:
    """ListObjectVersions, as pages of whole keys: each page a list of keys' version lists
    (newest first; delete markers carry "DeleteMarker": True). A key whose versions straddle a
    listing page is held back and completed from the next, so a page never splits a key."""
    params = {"Bucket": place.bucket, "Prefix": prefix, "MaxKeys": page_size}
    if after:
        params["KeyMarker"] = after
    client = place.client
    pending: list[dict] = []
    while True:
        try:
            page = client.list_object_versions(**params)
        except (ClientError, BotoCoreError, OSError) as exc:
            raise translate(exc, what=f"listing versions of {place.bucket}/{prefix}") from exc
        entries = list(page.get("Versions") or []) + [
            {**marker, "DeleteMarker": True} for marker in page.get("DeleteMarkers") or []
        ]
        entries.sort(key=lambda e: (e["Key"], -e["LastModified"].timestamp()))
        entries = pending + entries
        truncated = bool(page.get("IsTruncated"))
        groups = [list(items) for _, items in itertools.groupby(entries, key=lambda e: e["Key"])]
        pending = groups.pop() if truncated and groups else []
        if groups:
            yield groups
        if not truncated:
            if pending:
                yield [pending]
            return
        params["KeyMarker"] = page["NextKeyMarker"]
        if page.get("NextVersionIdMarker"):
            params["VersionIdMarker"] = page["NextVersionIdMarker"]
