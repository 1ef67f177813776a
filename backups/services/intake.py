"""Storage events in: which prefixes changed, so an event run scans just those.

Two ways in, neither importing the pipeline:
- the shared event log (core.Event), followed with a cursor: the pipeline's intake records
  `asset.created` (payload "key": the upload in the ingest bucket) and `job.published`
  (payload "asset" and "prefix": its media under `assets/<id>/` and its package under
  `published/<id>/<job>/`); any app may record an event whose payload
  names a "bucket" with a "key" or "prefix";
- S3 event notification documents (ObjectCreated:*, ObjectRemoved:*) posted to
  /backups/events/s3/ with the storage-events bearer token (e.g. from an AWS SNS/SQS relay).

Each becomes a ScanRequest per covering policy source; requests are merged into one run.
Scheduled sweeps remain the safety net for anything an event never announced.
"""

from __future__ import annotations

import logging
import urllib.parse

from django.conf import settings
from django.db import IntegrityError, transaction

from backups import storage
from backups.models import EventCursor, ObjectVersion, PolicySource, ScanRequest
from core.models import Event

logger = logging.getLogger(__name__)

CURSOR = "backups"


class NotificationRejected(ValueError):
    pass


def _covering_sources(bucket: str, prefix: str) -> list[tuple[PolicySource, str]]:
    """(source, the narrower of the two prefixes) for every enabled source overlapping."""
    found = []
    for source in PolicySource.objects.filter(policy__enabled=True).select_related("policy"):
        if storage.bucket_resolve(source.bucket) != bucket:
            continue
        if prefix.startswith(source.prefix):
            found.append((source, prefix))
        elif source.prefix.startswith(prefix):
            found.append((source, source.prefix))
    return found


def scan_request_add(*, bucket: str, prefix: str, reason: str) -> int:
    """Ask the next event run to scan `prefix` (a key is a prefix of itself). Returns how many
    policy sources it concerned; a prefix already waiting is not added twice."""
    added = 0
    for source, narrowed in _covering_sources(bucket, prefix):
        try:
            with transaction.atomic():
                ScanRequest.objects.create(policy=source.policy, source=source, prefix=narrowed, reason=reason[:200])
        except IntegrityError:
            pass  # already waiting for the next event run
        added += 1
    return added


def _event_targets(event: dict) -> list[tuple[str, str]]:
    payload = event.get("payload") or {}
    if not isinstance(payload, dict):
        return []
    if event["type"] == "asset.created" and payload.get("key"):
        return [(settings.S3_BUCKET_INGEST, str(payload["key"]))]
    if event["type"] == "job.published" and payload.get("asset"):
        # Its renditions and the published package (playlists, manifest, segments, sprites).
        published = str(payload.get("prefix") or f"published/{payload['asset']}").rstrip("/") + "/"
        return [(settings.S3_BUCKET_MEDIA, f"assets/{payload['asset']}/"), (settings.S3_BUCKET_MEDIA, published)]
    if payload.get("bucket") and (payload.get("key") or payload.get("prefix")):
        return [(str(payload["bucket"]), str(payload.get("key") or payload.get("prefix")))]
    return []


def legal_hold_from_event(*, bucket: str, prefix: str) -> int:
    """An event says what was under `prefix` is under a legal hold (an asset deleted under one,
    docs/delivery.md): hold its ledger versions, so retention keeps their copies until a person
    clears the hold on the policy page. Returns how many versions it covers."""
    held = 0
    for source, narrowed in _covering_sources(bucket, prefix):
        held += ObjectVersion.objects.filter(source=source, key__startswith=narrowed).update(legal_hold=True)
    return held


def events_follow(*, limit: int = 1000) -> int:
    """Turn new events of the shared log into scan requests; returns how many were added."""
    with transaction.atomic():
        cursor, _ = EventCursor.objects.select_for_update().get_or_create(name=CURSOR)
        events = list(
            Event.objects.filter(id__gt=cursor.last_event_id).order_by("id").values("id", "type", "payload")[:limit]
        )
        added = 0
        for event in events:
            for bucket, prefix in _event_targets(event):
                added += scan_request_add(bucket=bucket, prefix=prefix, reason=f"event {event['type']} #{event['id']}")
                if (event.get("payload") or {}).get("legal_hold") is True:
                    legal_hold_from_event(bucket=bucket, prefix=prefix)
        if events:
            cursor.last_event_id = events[-1]["id"]
            cursor.save(update_fields=["last_event_id"])
    return added


def s3_notification_receive(*, document: dict) -> int:
    """Scan requests for the objects an S3 event notification names."""
    if not isinstance(document, dict):
        raise NotificationRejected("an S3 event notification must be a JSON object")
    if document.get("Event") == "s3:TestEvent":
        return 0
    records = document.get("Records")
    if not isinstance(records, list):
        raise NotificationRejected("an S3 event notification needs a 'Records' list")
    added = 0
    for record in records:
        try:
            name = str(record["eventName"])
            bucket = record["s3"]["bucket"]["name"]
            key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        except (KeyError, TypeError) as exc:
            raise NotificationRejected(f"S3 event record is missing {exc}") from exc
        if name.startswith(("ObjectCreated:", "ObjectRemoved:")):
            added += scan_request_add(bucket=bucket, prefix=key, reason=name)
    return added
