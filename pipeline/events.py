"""Events in: every way an object-created announcement reaches Reelflow becomes one call.

Sources: the SeaweedFS filer webhook, S3 event notifications (via SQS, in AWS's format), the
reconcile sweep, the CLI and the studio. Each is normalized to `ObjectCreated` and passed to
`object_created_receive`, which HEADs the object (so every source agrees on its identity:
bucket, key and ETag or version) and creates at most one job per object version.
"""

import logging
import urllib.parse
from dataclasses import dataclass

from botocore.exceptions import ClientError
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction

from core import logs, s3
from core.services import event_record
from pipeline.filer_events import parse_filer_event as parse
from pipeline.models import IngestEvent
from pipeline.services.jobs import job_create_for_upload

logger = logging.getLogger(__name__)

UPLOAD_PREFIX = "uploads/"


class EventRejected(ValueError):
    """The announcement is malformed or names something Reelflow must not act on."""


@dataclass(frozen=True)
class ObjectCreated:
    bucket: str
    key: str
    size: int | None = None
    etag: str | None = None
    version_id: str | None = None


def parse_s3_notification(document: dict) -> list[ObjectCreated]:
    """Objects created, from an S3 event notification document ({"Records": [...]}).

    Keys arrive URL-encoded (spaces as '+'), as S3 sends them. Test events
    ("s3:TestEvent") and non-create records are ignored.
    """
    if not isinstance(document, dict):
        raise EventRejected("an S3 event notification must be a JSON object")
    if document.get("Event") == "s3:TestEvent":
        return []
    records = document.get("Records")
    if not isinstance(records, list):
        raise EventRejected("an S3 event notification needs a 'Records' list")
    created = []
    for record in records:
        try:
            if not str(record["eventName"]).startswith("ObjectCreated:"):
                continue
            bucket = record["s3"]["bucket"]["name"]
            obj = record["s3"]["object"]
            key = urllib.parse.unquote_plus(obj["key"])
        except (KeyError, TypeError) as exc:
            raise EventRejected(f"S3 event record is missing {exc}") from exc
        created.append(
            ObjectCreated(
                bucket=bucket,
                key=key,
                size=obj.get("size"),
                etag=obj.get("eTag") or obj.get("etag"),
                version_id=obj.get("versionId"),
            )
        )
    return created


def parse_filer_event(body) -> list[ObjectCreated]:
    """Objects created, from a SeaweedFS filer webhook body (see pipeline.filer_events)."""
    if not isinstance(body, dict) or "event_type" not in body and "message" not in body:
        raise EventRejected("not a filer event: expected 'event_type' and 'message'")
    return [
        ObjectCreated(bucket=e["bucket"], key=e["key"], size=e["size"], etag=e["etag"])
        for e in parse(body)
        if e["event"] == "created"
    ]


def publisher_for_key(key: str):
    """`uploads/<username>/...` -> that publisher, or EventRejected."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] + "/" != UPLOAD_PREFIX or not parts[1] or not parts[-1]:
        raise EventRejected(
            f"key {key!r} is outside {UPLOAD_PREFIX}<publisher>/: only objects under a publisher's folder are "
            f"encoded; move it to {UPLOAD_PREFIX}<publisher username>/<file name>"
        )
    user = get_user_model().objects.filter(username=parts[1], is_active=True).first()
    if user is None or not user.has_perm("core.access_studio"):
        raise EventRejected(f"no active publisher named {parts[1]!r}")
    return user


def _dedup_key(bucket: str, key: str, version: str) -> str:
    return f"{bucket}/{key}@{version}"[:400]


def object_created_receive(*, created: ObjectCreated, source: str) -> IngestEvent | None:
    """Record an announcement and start a job for it, unless this object version has one.

    Returns the IngestEvent that started a job, or None for a duplicate, an object outside the
    ingest prefix, or one that no longer exists. Raises EventRejected for objects that can never
    be processed (unknown publisher).
    """
    if created.bucket != settings.S3_BUCKET_INGEST or created.key.endswith("/"):
        return None
    logs.bind(trace_id=logs.trace_id_for(created.bucket, created.key))
    try:
        head = s3.client().head_object(Bucket=created.bucket, Key=created.key)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
            logger.info("event for %s/%s: object is gone", created.bucket, created.key)
            return None
        raise
    version = head.get("VersionId") or s3.etag_clean(head.get("ETag"))
    if not version:
        raise EventRejected(f"{created.key}: S3 gave no ETag or version for the object")
    dedup = _dedup_key(created.bucket, created.key, version)
    try:
        publisher = publisher_for_key(created.key)
    except EventRejected as exc:
        _rejection_record(created, source=source, dedup=dedup, version=version, size=head.get("ContentLength"), why=exc)
        raise
    try:
        with transaction.atomic():
            event = IngestEvent.objects.create(
                dedup_key=dedup,
                source=source,
                bucket=created.bucket,
                key=created.key,
                version=version,
                size=head.get("ContentLength"),
            )
            job = job_create_for_upload(
                publisher=publisher,
                bucket=created.bucket,
                key=created.key,
                version=version,
                size=head.get("ContentLength"),
                metadata=head.get("Metadata") or {},
            )
            event.job = job
            event.outcome = f"started job {job.pk}"
            event.save(update_fields=["job", "outcome"])
    except IntegrityError:
        # The unique dedup key says another announcement of this version got here first.
        return None
    return event


@transaction.atomic
def _rejection_record(created: ObjectCreated, *, source: str, dedup: str, version: str, size, why: EventRejected):
    """Recorded once per object version, so the audit trail and the operations page show it and
    the sweep does not retry it forever; the event (no owner: operations staff see it) says why."""
    event, new = IngestEvent.objects.get_or_create(
        dedup_key=dedup,
        defaults={"source": source, "bucket": created.bucket, "key": created.key, "version": version, "size": size,
                  "outcome": f"rejected: {why}"[:200]},
    )  # fmt: skip
    if new:
        event_record(type="ingest.rejected", subject=event, payload={"key": created.key, "size": size, "reason": str(why)})


def ingest_sweep(*, page_size: int = 1000) -> int:
    """Start jobs for uploads that no event announced. Returns how many were started.

    The listing is streamed page by page; an object is skipped cheaply when an event for its
    key and ETag already exists, so a sweep over a large prefix costs one query per page.
    """
    client = s3.client()
    paginator = client.get_paginator("list_objects_v2")
    started = 0
    # The whole bucket, not only uploads/: an object put elsewhere is shown to operations
    # staff (rejected once, then skipped like any object already announced).
    pages = paginator.paginate(Bucket=settings.S3_BUCKET_INGEST, PaginationConfig={"PageSize": page_size})
    try:
        for page in pages:
            started += _sweep_page(page)
    except client.exceptions.NoSuchBucket:
        # At the first start the scheduler can run before the buckets are made; the next sweep
        # finds them. Anything else is a real error and is raised.
        logger.warning("ingest sweep: bucket %s does not exist (yet)", settings.S3_BUCKET_INGEST)
    return started


def _sweep_page(page: dict) -> int:
    """Announce the page's objects that no event announced; how many jobs that started."""
    started = 0
    contents = page.get("Contents", [])
    keys = {
        _dedup_key(settings.S3_BUCKET_INGEST, o["Key"], s3.etag_clean(o.get("ETag"))): o for o in contents
    }
    known = set(IngestEvent.objects.filter(dedup_key__in=list(keys)).values_list("dedup_key", flat=True))
    for dedup, obj in keys.items():
        if dedup in known or obj["Key"].endswith("/"):
            continue
        try:
            if object_created_receive(
                created=ObjectCreated(bucket=settings.S3_BUCKET_INGEST, key=obj["Key"], size=obj.get("Size")),
                source=IngestEvent.Source.SWEEP,
            ):
                started += 1
        except EventRejected as exc:
            logger.warning("sweep rejected %s: %s", obj["Key"], exc)
    return started
