"""Reads of the studio: upload sessions, the bytes a publisher uses, an asset's timeline."""

from datetime import datetime

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from core.models import Event
from pipeline.models import Asset, Profile
from studio.models import UploadSession, UploadState


def upload_session_for(*, publisher, session_id) -> UploadSession | None:
    """The publisher's own session, or None (another's is as good as missing)."""
    return (
        UploadSession.objects.select_related("publisher", "asset")
        .filter(pk=session_id, publisher=publisher)
        .first()
    )


def upload_session_resumable(
    *, publisher, filename: str, size: int, last_modified_ms: int, fingerprint: str
) -> UploadSession | None:
    return (
        UploadSession.objects.filter(
            publisher=publisher,
            state=UploadState.UPLOADING,
            filename=filename,
            size=size,
            last_modified_ms=last_modified_ms,
            fingerprint=fingerprint,
        )
        .order_by("-created_at")
        .first()
    )


def upload_sessions_open(*, publisher, limit: int = 20) -> list[UploadSession]:
    """Unfinished, unexpired uploads: the upload page offers to resume or discard them."""
    return list(
        UploadSession.objects.filter(
            publisher=publisher, state=UploadState.UPLOADING, expires_at__gt=timezone.now()
        ).order_by("-created_at")[:limit]
    )


def upload_sessions_past_expiry(*, now: datetime) -> QuerySet[UploadSession]:
    return UploadSession.objects.filter(state=UploadState.UPLOADING, expires_at__lte=now).order_by(
        "expires_at"
    )


def bytes_in_use(*, publisher) -> int:
    """Sources the publisher keeps (every asset's) plus uploads in flight, in bytes."""
    stored = Asset.objects.filter(publisher=publisher).aggregate(total=Sum("source_size"))["total"] or 0
    in_flight = (
        UploadSession.objects.filter(
            publisher=publisher, state=UploadState.UPLOADING, expires_at__gt=timezone.now()
        ).aggregate(total=Sum("size"))["total"]
        or 0
    )
    return stored + in_flight


def asset_timeline(*, asset: Asset, limit: int = 200) -> list[Event]:
    """What happened to the asset and its jobs, oldest first (the newest `limit`)."""
    job_ids = [str(pk) for pk in asset.jobs.values_list("pk", flat=True)]
    events = (
        Event.objects.filter(
            Q(subject_type="pipeline.asset", subject_id=str(asset.pk))
            | Q(subject_type="pipeline.encodejob", subject_id__in=job_ids)
        )
        .select_related("actor")
        .order_by("-id")[:limit]
    )
    return list(reversed(events))


def profiles_offered() -> QuerySet[Profile]:
    return Profile.objects.filter(is_active=True).order_by("name")
