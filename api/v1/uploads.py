"""Direct uploads: the same multipart path as the studio page (studio.services), driven by a
token instead of a session: start (or resume) and get part URLs, sign more parts, complete,
abort. The client PUTs the parts straight to S3."""

import base64
import uuid

from django.conf import settings
from django.http import HttpRequest
from ninja import Router, Status

from api import imports
from api.models import UrlImport
from api.v1.auth import publisher, write_required
from api.v1.errors import ERROR_CODES, ApiError, ErrorOut, not_found
from api.v1.schemas import ImportIn, ImportOut, PartsIn, PartUrlsOut, UploadIn, UploadOut
from studio import selectors as studio_selectors
from studio import services as studio_services
from studio.models import UploadSession
from studio.services import UploadRefused
from studio.views import REFUSAL_STATUS

router = Router(tags=["uploads"])
# Part URLs signed with the start, as the page does: small files need no second round trip.
PART_URLS_WITH_START = 20


def _refused(exc: UploadRefused) -> ApiError:
    return ApiError(REFUSAL_STATUS[exc.code], str(exc.code), exc.message)


def upload_out(session: UploadSession, **extra) -> dict:
    return {
        "id": str(session.pk), "state": session.state, "key": session.key, "title": session.title,
        "profile": session.profile.slug, "size": session.size, "part_size": session.part_size,
        "parts_total": session.parts_total, "expires_at": session.expires_at, "asset": session.asset_id, **extra,
    }  # fmt: skip


def _session(request: HttpRequest, upload_id: str) -> UploadSession:
    try:
        uuid.UUID(upload_id)
    except ValueError:
        raise not_found("upload") from None
    session = studio_selectors.upload_session_for(publisher=publisher(request), session_id=upload_id)
    if session is None:
        raise not_found("upload")
    return session


@router.post("/uploads", response={200: UploadOut, 201: UploadOut, ERROR_CODES: ErrorOut})
def upload_start(request: HttpRequest, payload: UploadIn):
    write_required(request)
    try:
        head = base64.b64decode(payload.head, validate=True)
    except ValueError as exc:  # binascii.Error, or characters outside ASCII
        raise ApiError(400, "invalid", "head must be base64 of the file's first bytes") from exc
    try:
        started = studio_services.upload_start(
            publisher=publisher(request), filename=payload.filename, size=payload.size,
            last_modified_ms=payload.last_modified, fingerprint=payload.fingerprint,
            content_type=payload.content_type, title=payload.title,
            profile_slug=payload.profile or settings.REELFLOW_DEFAULT_PROFILE, head=head,
            sign_parts=PART_URLS_WITH_START,
        )  # fmt: skip
    except UploadRefused as exc:
        raise _refused(exc) from exc
    body = upload_out(
        started.session, resumed=started.resumed,
        parts_stored=[{"number": n, "size": size} for n, size in sorted(started.parts_stored.items())],
        part_urls={str(n): url for n, url in started.part_urls.items()},
    )  # fmt: skip
    return Status(200 if started.resumed else 201, body)


@router.get("/uploads/{upload_id}", response={200: UploadOut, ERROR_CODES: ErrorOut})
def upload_get(request: HttpRequest, upload_id: str):
    return upload_out(_session(request, upload_id))


@router.post("/uploads/{upload_id}/parts", response={200: PartUrlsOut, ERROR_CODES: ErrorOut})
def upload_parts(request: HttpRequest, upload_id: str, payload: PartsIn):
    write_required(request)
    session = _session(request, upload_id)
    try:
        urls = studio_services.upload_parts_sign(session=session, part_numbers=payload.parts)
    except UploadRefused as exc:
        raise _refused(exc) from exc
    return {"urls": {str(n): url for n, url in urls.items()}, "expires_in": settings.STUDIO_UPLOAD_PART_URL_SECONDS}


@router.post("/uploads/{upload_id}/complete", response={200: UploadOut, ERROR_CODES: ErrorOut})
def upload_complete(request: HttpRequest, upload_id: str):
    write_required(request)
    session = _session(request, upload_id)
    try:
        studio_services.upload_complete(session=session)
    except UploadRefused as exc:
        raise _refused(exc) from exc
    session.refresh_from_db()
    return upload_out(session)


@router.post("/uploads/{upload_id}/abort", response={200: UploadOut, ERROR_CODES: ErrorOut})
def upload_abort(request: HttpRequest, upload_id: str):
    write_required(request)
    session = studio_services.upload_abort(session=_session(request, upload_id), actor=publisher(request))
    return upload_out(session)


def import_out(found: UrlImport) -> dict:
    return {
        "id": found.pk, "url": found.url, "state": found.state, "failure_reason": found.failure_reason,
        "size": found.size, "asset": found.asset_id, "created_at": found.created_at, "finished_at": found.finished_at,
    }  # fmt: skip


@router.post("/imports", response={202: ImportOut, ERROR_CODES: ErrorOut})
def import_start(request: HttpRequest, payload: ImportIn):
    """Upload from a URL: the server fetches it (public addresses only) and starts its job."""
    write_required(request)
    try:
        found = imports.url_import_start(
            publisher=publisher(request), url=payload.url, title=payload.title,
            profile_slug=payload.profile or settings.REELFLOW_DEFAULT_PROFILE,
        )  # fmt: skip
    except imports.ImportRefused as exc:
        raise ApiError(400, "invalid", str(exc)) from exc
    return Status(202, import_out(found))


@router.get("/imports/{import_id}", response={200: ImportOut, ERROR_CODES: ErrorOut})
def import_get(request: HttpRequest, import_id: int):
    found = UrlImport.objects.filter(pk=import_id, publisher=publisher(request)).first()
    if found is None:
        raise not_found("import")
    return import_out(found)
