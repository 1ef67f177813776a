"""Every write of delivery: an asset's playback policy and downloads, takedown, deletion, and
a publisher's embed origins. Playback URLs are minted here too (they are signed, not stored)."""

import logging
import math
import urllib.parse
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from core import s3
from core.services import event_record
from delivery import downloads, signing
from delivery.models import AssetDelivery, PlaybackPolicy, PublisherDelivery
from delivery.selectors import PUBLIC_TOKEN
from pipeline.models import Asset, EncodeJob, JobState
from pipeline.selectors import job_published_latest
from pipeline.services.jobs import job_cancel

logger = logging.getLogger(__name__)

HLS_NAME = "master.m3u8"
DASH_NAME = "manifest.mpd"
_ORIGIN_MAX = 20


class DeliveryRefused(ValueError):
    """A change the caller can correct; `message` says how."""


def asset_delivery_ensure(asset: Asset) -> AssetDelivery:
    delivery, _ = AssetDelivery.objects.get_or_create(
        asset=asset, defaults={"policy": settings.DELIVERY_DEFAULT_POLICY}
    )
    return delivery


def token_seconds(duration_s: float | None, seconds: int | None = None) -> int:
    """The lifetime of a playback link: asked for, else the setting plus twice the video's
    duration (a player fetches the manifest once and plays for as long as the video lasts)."""
    if seconds is None:
        seconds = settings.DELIVERY_TOKEN_SECONDS + math.ceil(2 * (duration_s or 0))
    return max(60, min(seconds, signing.MAX_SECONDS))


def playback_urls(*, asset: Asset, job: EncodeJob | None, seconds: int | None = None) -> dict:
    """Absolute HLS and DASH URLs anyone can open (no cookie), per the asset's policy: unsigned
    for public assets, with an expiring token for signed ones; none for private or taken-down
    assets or before anything is published."""
    delivery = asset_delivery_ensure(asset)
    out = {"policy": delivery.policy, "playback_id": delivery.playback_id, "hls": None, "dash": None,
           "expires_at": None, "embed": None, "downloads": {}}  # fmt: skip
    if job is None or delivery.policy == PlaybackPolicy.PRIVATE or delivery.is_taken_down:
        return out
    token, expires = PUBLIC_TOKEN, None
    if delivery.policy == PlaybackPolicy.SIGNED:
        token, expires = signing.token_for(playback_id=delivery.playback_id, seconds=token_seconds(asset.duration_s, seconds))

    def url(name: str) -> str:
        return settings.SITE_URL + reverse("delivery:play", args=[delivery.playback_id, token, name])

    out["hls"] = url(HLS_NAME)
    out["downloads"] = {
        rung: settings.SITE_URL + reverse("delivery:download", args=[delivery.playback_id, token, rung])
        for rung in delivery.downloadable
    }
    out["dash"] = url(DASH_NAME) if job.dash_manifest_key else None
    embed = settings.SITE_URL + reverse("delivery:embed", args=[delivery.playback_id])
    out["embed"] = embed + (f"?token={urllib.parse.quote(token)}" if expires else "")
    out["expires_at"] = (
        datetime.fromtimestamp(expires, tz=UTC).isoformat() if expires else None
    )
    return out


def asset_details_update(
    *, asset: Asset, actor, title: str | None = None, metadata: dict | None = None, policy: str | None = None,
    downloadable: list[str] | None = None, available_rungs: list[str] | None = None, legal_hold: bool | None = None,
) -> AssetDelivery:
    """Change an asset's title, its publisher's metadata, its playback policy or which video
    rungs are downloadable (`available_rungs`: the published job's video renditions)."""
    delivery = asset_delivery_ensure(asset)
    changed: dict = {}
    if policy is not None:
        if policy not in PlaybackPolicy.values:
            raise DeliveryRefused(f"policy must be one of {', '.join(PlaybackPolicy.values)}")
        delivery.policy = changed["policy"] = policy
    if metadata is not None:
        if any(len(k) > 100 or len(v) > 500 for k, v in metadata.items()):
            raise DeliveryRefused("metadata keys are at most 100 characters and values at most 500")
        delivery.metadata = changed["metadata"] = metadata
    if downloadable is not None:
        unknown = sorted(set(downloadable) - set(available_rungs or []))
        if unknown:
            raise DeliveryRefused(
                f"not video renditions of the published job: {', '.join(unknown)}; "
                f"choose from {', '.join(available_rungs or []) or 'none (nothing is published)'}"
            )
        delivery.downloadable = changed["downloadable"] = sorted(set(downloadable))
    if legal_hold is not None and legal_hold != delivery.legal_hold:
        delivery.legal_hold = changed["legal_hold"] = legal_hold
    if title is not None and title.strip() and title.strip() != asset.title:
        asset.title = changed["title"] = title.strip()[:200]
    if not changed:
        return delivery
    delivery.updated_at = timezone.now()
    with transaction.atomic():
        delivery.save(update_fields=["policy", "metadata", "downloadable", "legal_hold", "updated_at"])
        if "title" in changed:
            asset.save(update_fields=["title"])
        job = job_published_latest(asset=asset)
        if changed.get("downloadable") and job is not None:
            downloads.downloads_request(job=job, rungs=changed["downloadable"])
        event_record(type="asset.updated", subject=asset, actor=actor, owner=asset.publisher,
                     payload={k: v for k, v in changed.items() if k != "metadata"})  # fmt: skip
    return delivery


def asset_takedown(*, asset: Asset, actor, reason: str) -> AssetDelivery:
    """Refuse playback, embeds and downloads from now on; nothing is deleted."""
    delivery = asset_delivery_ensure(asset)
    if delivery.is_taken_down:
        return delivery
    delivery.taken_down_at = timezone.now()
    delivery.takedown_reason = (reason or "").strip()[:500]
    with transaction.atomic():
        delivery.save(update_fields=["taken_down_at", "takedown_reason"])
        event_record(type="asset.taken_down", subject=asset, actor=actor, owner=asset.publisher,
                     payload={"reason": delivery.takedown_reason})  # fmt: skip
    return delivery


def asset_takedown_lift(*, asset: Asset, actor) -> AssetDelivery:
    delivery = asset_delivery_ensure(asset)
    if not delivery.is_taken_down:
        return delivery
    delivery.taken_down_at = None
    delivery.takedown_reason = ""
    with transaction.atomic():
        delivery.save(update_fields=["taken_down_at", "takedown_reason"])
        event_record(type="asset.takedown_lifted", subject=asset, actor=actor, owner=asset.publisher)
    return delivery


def _s3_delete_prefix(bucket: str, prefix: str) -> int:
    client = s3.client()
    deleted = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        objects = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if objects:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
            deleted += len(objects)
    return deleted


def asset_media_purge(*, asset_id: int, source_bucket: str, source_key: str) -> int:
    """Delete an asset's bytes from S3: its working outputs, its published packages and its
    source. Idempotent (a second call finds nothing)."""
    deleted = _s3_delete_prefix(settings.S3_BUCKET_MEDIA, f"assets/{asset_id}/")
    deleted += _s3_delete_prefix(settings.S3_BUCKET_MEDIA, f"published/{asset_id}/")
    if source_key:
        s3.client().delete_object(Bucket=source_bucket, Key=source_key)
        deleted += 1
    return deleted


def asset_delete(*, asset: Asset, actor) -> int:
    """Delete an asset: a running job is cancelled, the row (jobs, renditions, delivery) goes at
    once, so lists and players stop finding it, and its bytes are removed from S3. The event log
    keeps `asset.deleted` (the audit record), whose payloads name the deleted prefixes, so the
    backups' event follower rescans them and their copies expire under the policy's retention.
    Returns how many objects were deleted."""
    for job in asset.jobs.exclude(state__in=[JobState.PUBLISHED, JobState.FAILED, JobState.CANCELLED, JobState.REJECTED]):
        job_cancel(job_id=job.pk, actor=actor)
    asset_id, bucket, key = asset.pk, asset.source_bucket, asset.source_key
    # Under a legal hold, backups keep their copies past retention (backups.LegalHold).
    hold = {"legal_hold": True} if asset_delivery_ensure(asset).legal_hold else {}
    with transaction.atomic():
        owner = asset.publisher
        event_record(type="asset.deleted", subject=("pipeline.asset", asset_id), actor=actor, owner=owner,
                     payload={"title": asset.title, "bucket": settings.S3_BUCKET_MEDIA, "prefix": f"assets/{asset_id}/",
                              **hold})  # fmt: skip
        event_record(type="asset.media_deleted", subject=("pipeline.asset", asset_id), actor=actor, owner=owner,
                     payload={"bucket": settings.S3_BUCKET_MEDIA, "prefix": f"published/{asset_id}/", **hold})  # fmt: skip
        if key:
            event_record(type="asset.source_deleted", subject=("pipeline.asset", asset_id), actor=actor, owner=owner,
                         payload={"bucket": bucket, "key": key, **hold})  # fmt: skip
        Asset.objects.filter(pk=asset_id).delete()
    try:
        return asset_media_purge(asset_id=asset_id, source_bucket=bucket, source_key=key)
    except (ClientError, BotoCoreError):
        # The asset is gone for everyone already; its bytes stay until a purge succeeds. The
        # events name them, and `asset_media_purge` is idempotent (run it again by hand).
        logger.exception("asset %s deleted but its media could not be purged from S3", asset_id)
        return 0


def _origin_clean(origin: str) -> str:
    parts = urllib.parse.urlsplit(origin.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") or parts.query:
        raise DeliveryRefused(f"{origin!r} is not an origin: write scheme://host[:port], e.g. https://www.example.com")
    if any(ch in origin for ch in " ;,'\""):
        raise DeliveryRefused(f"{origin!r} contains characters an origin cannot have")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def embed_origins_set(*, publisher, origins: list[str], actor=None) -> PublisherDelivery:
    """The origins allowed to frame the publisher's embeds (CSP frame-ancestors)."""
    if len(origins) > _ORIGIN_MAX:
        raise DeliveryRefused(f"list at most {_ORIGIN_MAX} origins")
    cleaned = sorted({_origin_clean(o) for o in origins if o.strip()})
    found, _ = PublisherDelivery.objects.get_or_create(publisher=publisher)
    found.embed_origins = cleaned
    found.updated_at = timezone.now()
    with transaction.atomic():
        found.save(update_fields=["embed_origins", "updated_at"])
        event_record(type="delivery.embed_origins_changed", subject=found, actor=actor or publisher, owner=publisher,
                     payload={"origins": cleaned})  # fmt: skip
    return found
