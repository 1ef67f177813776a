"""Every write of the studio: multipart upload sessions, from the first part to the job.

The browser sends the bytes straight to S3 with part URLs signed here for one key under the
publisher's prefix, one upload id and a few minutes. Django never sees a video byte: it
starts the multipart upload (with the metadata that chooses profile and title), signs parts,
asks S3 which parts it holds (ListParts is the truth, for resuming and for completing),
completes, reads back the first bytes to check the container, and hands the object to the
same object-created path as every other upload.
"""

import logging
import math
import re
import unicodedata
import urllib.parse
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import PurePosixPath

from botocore.exceptions import ClientError
from django.conf import settings
from django.db import models, transaction
from django.utils import timezone

from core import s3
from core.services import event_record
from pipeline import selectors as pipeline_selectors
from pipeline.events import UPLOAD_PREFIX, EventRejected, ObjectCreated, object_created_receive
from pipeline.models import Asset, IngestEvent, Profile
from studio import selectors, sniff
from studio.models import UploadSession, UploadState

logger = logging.getLogger(__name__)

# S3's rules for multipart uploads.
S3_MIN_PART_BYTES = 5 * 1024**2
S3_MAX_PARTS = 10_000
# Part URLs a browser may ask for in one request.
MAX_PARTS_PER_SIGNING = 100

_NO_SUCH_UPLOAD = {"NoSuchUpload", "404", "NotFound"}


class Refusal(models.TextChoices):
    INVALID = "invalid", "Invalid request"
    EMPTY = "empty", "Empty file"
    TOO_LARGE = "too_large", "Too large"
    NOT_VIDEO = "not_video", "Not a video"
    QUOTA = "quota_exceeded", "Quota exceeded"
    EXPIRED = "expired", "Session expired"
    CLOSED = "closed", "Session closed"
    INCOMPLETE = "incomplete", "Parts missing"


class UploadRefused(Exception):
    """A refusal a publisher can act on; `message` is written for them."""

    def __init__(self, code: Refusal, message: str, **detail) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail


@dataclass(frozen=True)
class UploadStarted:
    session: UploadSession
    resumed: bool
    # Parts S3 already holds: {part number: size}.
    parts_stored: dict[int, int]
    notice: str = ""
    # URLs for the first parts still to send, so a small file needs no signing round trip.
    part_urls: dict[int, str] = field(default_factory=dict)


def human_bytes(size: int) -> str:
    value = float(size)
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} bytes" if unit == "bytes" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def part_size_for(size: int) -> int:
    """Whole MiB: the configured part size, smaller for files too small to keep every parallel
    slot busy twice over, never below S3's minimum, raised to stay within 10,000 parts."""
    spread = math.ceil(size / (2 * max(1, settings.STUDIO_UPLOAD_PARALLEL_PARTS)))
    wanted = max(
        S3_MIN_PART_BYTES, min(settings.STUDIO_UPLOAD_PART_BYTES, spread), math.ceil(size / S3_MAX_PARTS)
    )
    mib = 1024**2
    return math.ceil(wanted / mib) * mib


def filename_clean(filename: str) -> str:
    """The last path component, without control characters or slashes, at most 150 chars
    (keeping the extension)."""
    name = PurePosixPath(filename.replace("\\", "/")).name
    name = "".join(ch for ch in unicodedata.normalize("NFC", name) if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"\s+", " ", name).strip(" .")
    if len(name) > 150:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[: 149 - len(ext)]}.{ext}" if dot and len(ext) <= 10 else name[:150]
    return name or "upload"


def _title_default(filename: str) -> str:
    return PurePosixPath(filename).stem.replace("_", " ").strip() or filename


def _refuse_if_not_video(*, filename: str, head: bytes) -> None:
    if not sniff.extension_is_video(filename):
        raise UploadRefused(
            Refusal.NOT_VIDEO,
            f"“{filename}” does not have a video file extension. "
            f"Accepted: {', '.join(sorted(sniff.VIDEO_EXTENSIONS))}.",
        )
    if sniff.container_of(head) is None:
        raise UploadRefused(
            Refusal.NOT_VIDEO,
            f"“{filename}” does not start like any video container Reelflow knows: it is not a video.",
        )


def _refuse_if_over_quota(*, publisher, size: int) -> None:
    quota = settings.STUDIO_QUOTA_BYTES
    if quota <= 0:
        return
    used = selectors.bytes_in_use(publisher=publisher)
    if used + size > quota:
        left = max(0, quota - used)
        raise UploadRefused(
            Refusal.QUOTA,
            f"This file needs {human_bytes(size)} but only {human_bytes(left)} of your "
            f"{human_bytes(quota)} quota is left.",
            quota=quota,
            used=used,
        )


def _parts_listed(session: UploadSession) -> list[dict]:
    """The parts S3 holds for the session: [{"PartNumber", "ETag", "Size"}] (raises
    ClientError NoSuchUpload when the upload is gone)."""
    client = s3.client()
    newest: dict[int, tuple[tuple, dict]] = {}
    marker = 0
    while True:
        page = client.list_parts(
            Bucket=session.bucket,
            Key=session.key,
            UploadId=session.upload_id,
            PartNumberMarker=marker,
            MaxParts=1000,
        )
        for part in page.get("Parts", []):
            # A part sent twice is listed twice by SeaweedFS (4.48), in no particular order; S3
            # keeps the last upload. Take the newest; within the same second, the right size.
            number = int(part["PartNumber"])
            rank = (part["LastModified"], int(part["Size"]) == _expected_part_size(session, number))
            if number not in newest or rank > newest[number][0]:
                newest[number] = (rank, part)
        if not page.get("IsTruncated"):
            break
        marker = int(page["NextPartNumberMarker"])
    return [
        {"PartNumber": n, "ETag": p["ETag"], "Size": int(p["Size"])} for n, (_, p) in sorted(newest.items())
    ]


def _is_gone(exc: ClientError) -> bool:
    return exc.response.get("Error", {}).get("Code") in _NO_SUCH_UPLOAD


def _s3_abort(session: UploadSession) -> None:
    try:
        s3.client().abort_multipart_upload(Bucket=session.bucket, Key=session.key, UploadId=session.upload_id)
    except ClientError as exc:
        if not _is_gone(exc):
            raise


def _close(
    session: UploadSession, state: UploadState, reason: str = "", *, asset: Asset | None = None
) -> None:
    session.state = state
    session.failure_reason = reason
    session.finished_at = timezone.now()
    session.asset = asset or session.asset
    session.save(update_fields=["state", "failure_reason", "finished_at", "asset"])


# --- Starting (or resuming) ----------------------------------------------------------------


def upload_start(
    *,
    publisher,
    filename: str,
    size: int,
    last_modified_ms: int,
    fingerprint: str,
    content_type: str,
    title: str,
    profile_slug: str,
    head: bytes,
    sign_parts: int = 0,
) -> UploadStarted:
    """Resume the publisher's unfinished upload of this very file, or start a new one, and
    sign URLs for up to `sign_parts` of the parts still to send.

    "This very file" is the same name, size, lastModified and fingerprint (SHA-256 of its
    first bytes, computed by the browser). Title and profile of a resumed upload are the ones
    it started with: they are fixed in the object's metadata.
    """
    started = _upload_open(
        publisher=publisher,
        filename=filename,
        size=size,
        last_modified_ms=last_modified_ms,
        fingerprint=fingerprint,
        content_type=content_type,
        title=title,
        profile_slug=profile_slug,
        head=head,
    )
    session = started.session
    missing = [
        n
        for n in range(1, session.parts_total + 1)
        if started.parts_stored.get(n) != _expected_part_size(session, n)
    ][: min(sign_parts, MAX_PARTS_PER_SIGNING)]
    if not missing:
        return started
    return replace(started, part_urls=upload_parts_sign(session=session, part_numbers=missing))


def _upload_open(
    *,
    publisher,
    filename: str,
    size: int,
    last_modified_ms: int,
    fingerprint: str,
    content_type: str,
    title: str,
    profile_slug: str,
    head: bytes,
) -> UploadStarted:
    filename = filename_clean(filename)
    _refuse_if_empty_or_too_large(filename=filename, size=size)
    _refuse_if_not_video(filename=filename, head=head)

    resumed, notice = _upload_resume(
        publisher=publisher,
        filename=filename,
        size=size,
        last_modified_ms=last_modified_ms,
        fingerprint=fingerprint,
    )
    if resumed is not None:
        return resumed

    profile = Profile.objects.filter(slug=profile_slug, is_active=True).first()
    if profile is None:
        raise UploadRefused(Refusal.INVALID, "Choose one of the encoding profiles offered.")
    _refuse_if_over_quota(publisher=publisher, size=size)

    session = _upload_session_create(
        publisher=publisher,
        filename=filename,
        size=size,
        last_modified_ms=last_modified_ms,
        fingerprint=fingerprint,
        content_type=content_type,
        title=(title or "").strip()[:200] or _title_default(filename),
        profile=profile,
    )
    return UploadStarted(session=session, resumed=False, parts_stored={}, notice=notice)


def _refuse_if_empty_or_too_large(*, filename: str, size: int) -> None:
    if size <= 0:
        raise UploadRefused(Refusal.EMPTY, f"“{filename}” is empty.")
    if size > settings.REELFLOW_MAX_UPLOAD_BYTES:
        raise UploadRefused(
            Refusal.TOO_LARGE,
            f"“{filename}” is {human_bytes(size)}; the largest upload accepted is "
            f"{human_bytes(settings.REELFLOW_MAX_UPLOAD_BYTES)}.",
            limit=settings.REELFLOW_MAX_UPLOAD_BYTES,
        )


def _upload_resume(
    *, publisher, filename: str, size: int, last_modified_ms: int, fingerprint: str
) -> tuple[UploadStarted | None, str]:
    """The publisher's unfinished upload of this very file with the parts S3 holds, if it can
    go on; otherwise None and, when there was one, a notice saying why it starts again."""
    previous = selectors.upload_session_resumable(
        publisher=publisher,
        filename=filename,
        size=size,
        last_modified_ms=last_modified_ms,
        fingerprint=fingerprint,
    )
    if previous is None:
        return None, ""
    if previous.is_expired:
        upload_expire(session=previous)
        return None, "Your earlier upload of this file had expired, so it starts again from the beginning."
    try:
        stored = {int(p["PartNumber"]): int(p["Size"]) for p in _parts_listed(previous)}
    except ClientError as exc:
        if not _is_gone(exc):
            raise
        _close(previous, UploadState.EXPIRED, "S3 no longer holds the upload's parts")
        return None, "Your earlier upload of this file was no longer stored, so it starts again."
    return UploadStarted(session=previous, resumed=True, parts_stored=stored), ""


def _upload_session_create(
    *,
    publisher,
    filename: str,
    size: int,
    last_modified_ms: int,
    fingerprint: str,
    content_type: str,
    title: str,
    profile: Profile,
) -> UploadSession:
    """Start the multipart upload in S3 under a fresh key of the publisher's, then its session."""
    key = f"{UPLOAD_PREFIX}{publisher.get_username()}/{uuid.uuid4().hex}/{filename}"
    part_size = part_size_for(size)
    created = s3.client().create_multipart_upload(
        Bucket=settings.S3_BUCKET_INGEST,
        Key=key,
        ContentType=content_type or "application/octet-stream",
        # S3 metadata is ASCII: the pipeline URL-unquotes the title.
        Metadata={"profile": profile.slug, "title": urllib.parse.quote(title, safe="")},
    )
    with transaction.atomic():
        session = UploadSession.objects.create(
            publisher=publisher,
            filename=filename,
            size=size,
            last_modified_ms=last_modified_ms,
            fingerprint=fingerprint,
            content_type=content_type[:100],
            title=title,
            profile=profile,
            bucket=settings.S3_BUCKET_INGEST,
            key=key,
            upload_id=created["UploadId"],
            part_size=part_size,
            parts_total=math.ceil(size / part_size),
            expires_at=timezone.now() + timedelta(hours=settings.STUDIO_UPLOAD_SESSION_HOURS),
        )
        event_record(
            type="upload.started",
            subject=session,
            actor=publisher,
            owner=publisher,
            payload={"filename": filename, "size": size, "parts": session.parts_total, "key": key},
        )
    return session


def _refuse_unless_open(session: UploadSession) -> None:
    if session.state == UploadState.UPLOADING and session.is_expired:
        upload_expire(session=session)
    if session.state == UploadState.EXPIRED:
        raise UploadRefused(
            Refusal.EXPIRED,
            f"This upload session expired (uploads can be resumed for {settings.STUDIO_UPLOAD_SESSION_HOURS} hours). "
            "Choose the file again to start over.",
        )
    if session.state != UploadState.UPLOADING:
        raise UploadRefused(Refusal.CLOSED, f"This upload is already {session.get_state_display().lower()}.")


def upload_parts_sign(*, session: UploadSession, part_numbers: Iterable[int]) -> dict[int, str]:
    """Short-lived PUT URLs for the given parts of the session's upload (and nothing else)."""
    _refuse_unless_open(session)
    numbers = sorted(set(part_numbers))
    if not numbers or len(numbers) > MAX_PARTS_PER_SIGNING:
        raise UploadRefused(Refusal.INVALID, f"Ask for 1 to {MAX_PARTS_PER_SIGNING} parts at a time.")
    if numbers[0] < 1 or numbers[-1] > session.parts_total:
        raise UploadRefused(Refusal.INVALID, f"Part numbers run from 1 to {session.parts_total}.")
    return {
        n: s3.presign_upload_part(
            session.bucket,
            session.key,
            upload_id=session.upload_id,
            part_number=n,
            expires=settings.STUDIO_UPLOAD_PART_URL_SECONDS,
        )
        for n in numbers
    }


# --- Completing -------------------------------------------------------------------------------


def _expected_part_size(session: UploadSession, number: int) -> int:
    if number < session.parts_total:
        return session.part_size
    return session.size - session.part_size * (session.parts_total - 1)


def _complete_in_s3(session: UploadSession) -> None:
    """CompleteMultipartUpload with the parts S3 lists, once every part is there at its size.

    An upload S3 no longer knows but whose object exists was completed by an earlier call
    that died before recording it: nothing left to do.
    """
    client = s3.client()
    try:
        parts = _parts_listed(session)
    except ClientError as exc:
        if not _is_gone(exc):
            raise
        try:
            head = client.head_object(Bucket=session.bucket, Key=session.key)
        except ClientError:
            head = None
        if head is not None and head.get("ContentLength") == session.size:
            return
        _close(session, UploadState.EXPIRED, "S3 no longer holds the upload's parts")
        raise UploadRefused(
            Refusal.EXPIRED,
            "S3 no longer holds this upload's parts (it expired). Choose the file again to start over.",
        ) from exc
    sizes = {int(p["PartNumber"]): int(p["Size"]) for p in parts}
    wrong = [n for n in range(1, session.parts_total + 1) if sizes.get(n) != _expected_part_size(session, n)]
    if wrong or len(sizes) != session.parts_total:
        raise UploadRefused(
            Refusal.INCOMPLETE,
            f"{len(wrong)} of {session.parts_total} parts are missing or incomplete; the upload continues with them.",
            missing=wrong[:1000],
        )
    client.complete_multipart_upload(
        Bucket=session.bucket,
        Key=session.key,
        UploadId=session.upload_id,
        MultipartUpload={"Parts": [{"PartNumber": p["PartNumber"], "ETag": p["ETag"]} for p in parts]},
    )


def _stored_head(session: UploadSession) -> bytes:
    body = s3.client().get_object(
        Bucket=session.bucket, Key=session.key, Range=f"bytes=0-{sniff.HEAD_BYTES - 1}"
    )["Body"]
    try:
        return body.read()
    finally:
        body.close()


def upload_complete(*, session: UploadSession) -> Asset:
    """Join the parts, check the stored object is a video, and start its job through the
    object-created path (the filer webhook's later announcement of it is then a duplicate)."""
    if session.state == UploadState.COMPLETED and session.asset_id:
        return session.asset
    _refuse_unless_open(session)
    _complete_in_s3(session)

    if sniff.container_of(_stored_head(session)) is None:
        s3.client().delete_object(Bucket=session.bucket, Key=session.key)
        reason = "the uploaded bytes do not start like any video container"
        with transaction.atomic():
            _close(session, UploadState.REJECTED, reason)
            event_record(
                type="upload.rejected",
                subject=session,
                actor=session.publisher,
                owner=session.publisher,
                payload={"reason": reason},
            )
        raise UploadRefused(
            Refusal.NOT_VIDEO, f"“{session.filename}” is not a video: {reason}. It was deleted."
        )

    created = ObjectCreated(bucket=session.bucket, key=session.key, size=session.size)
    try:
        event = object_created_receive(created=created, source=IngestEvent.Source.STUDIO)
    except EventRejected as exc:
        with transaction.atomic():
            _close(session, UploadState.REJECTED, str(exc))
        raise UploadRefused(Refusal.INVALID, f"Reelflow cannot process this upload: {exc}") from exc
    job = (
        event.job
        if event is not None
        else pipeline_selectors.job_for_object(bucket=session.bucket, key=session.key)
    )
    if job is None:
        raise RuntimeError(f"upload {session.pk}: {session.key} was completed but started no job")

    with transaction.atomic():
        _close(session, UploadState.COMPLETED, asset=job.asset)
        event_record(
            type="upload.completed",
            subject=job.asset,
            actor=session.publisher,
            owner=session.publisher,
            payload={
                "filename": session.filename,
                "size": session.size,
                "parts": session.parts_total,
                "seconds": round((session.finished_at - session.created_at).total_seconds(), 1),
            },
        )
    return job.asset


# --- Cancelling and expiring ------------------------------------------------------------------


def upload_abort(*, session: UploadSession, actor=None) -> UploadSession:
    """Cancel: S3 deletes the stored parts. Idempotent."""
    if session.state != UploadState.UPLOADING:
        return session
    _s3_abort(session)
    with transaction.atomic():
        _close(session, UploadState.ABORTED)
        event_record(
            type="upload.cancelled",
            subject=session,
            actor=actor,
            owner=session.publisher,
            payload={"filename": session.filename},
        )
    return session


def upload_expire(*, session: UploadSession) -> UploadSession:
    if session.state != UploadState.UPLOADING:
        return session
    _s3_abort(session)
    with transaction.atomic():
        _close(session, UploadState.EXPIRED, "not finished in time")
        event_record(
            type="upload.expired",
            subject=session,
            owner=session.publisher,
            payload={"filename": session.filename},
        )
    return session


def upload_sessions_expire(*, now: datetime | None = None) -> int:
    """Abort every unfinished upload past its time (their parts cost storage). Returns how many."""
    expired = 0
    for session in selectors.upload_sessions_past_expiry(now=now or timezone.now()):
        upload_expire(session=session)
        expired += 1
    return expired
