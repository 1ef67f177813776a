"""Publisher pages and the upload API the page's script calls. Each view parses, authorizes,
calls one service or selector, and renders."""

import base64
import json
import logging
import re
from pathlib import PurePosixPath

from django.conf import settings
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from core import logs, s3
from core.roles import permission_required
from pipeline import selectors as pipeline_selectors
from pipeline.models import Artifact, AssetState, JobState, RenditionKind, RenditionState
from studio import delivery_views, playback, selectors, services, sniff
from studio.access import asset_viewer_required
from studio.models import UploadSession
from studio.services import Refusal, UploadRefused

logger = logging.getLogger(__name__)

REFUSAL_STATUS = {
    Refusal.INVALID: 400,
    Refusal.EMPTY: 400,
    Refusal.TOO_LARGE: 413,
    Refusal.NOT_VIDEO: 415,
    Refusal.QUOTA: 403,
    Refusal.EXPIRED: 410,
    Refusal.CLOSED: 409,
    Refusal.INCOMPLETE: 409,
}
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
# Part URLs signed with the start: a file of up to this many parts needs no signing round trip.
PART_URLS_WITH_START = 20


# --- Asset list -----------------------------------------------------------------------------


@permission_required("access_studio")
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    search = request.GET.get("q", "").strip()[:100]
    state = request.GET.get("state", "")
    state = state if state in AssetState.values else ""
    assets = pipeline_selectors.assets_listing(publisher=request.user, state=state or None, search=search)
    page = Paginator(assets, settings.STUDIO_ASSETS_PER_PAGE).get_page(request.GET.get("page"))
    rows = [
        {
            "asset": asset,
            "poster_url": s3.presign_get(settings.S3_BUCKET_MEDIA, asset.poster_key)
            if asset.poster_key
            else "",
            "job_state_label": JobState(asset.job_state).label if asset.job_state else "",
        }
        for asset in page
    ]
    query = {k: v for k, v in {"q": search, "state": state}.items() if v}
    return render(
        request,
        "studio/home.html",
        {
            "page": page,
            "rows": rows,
            "search": search,
            "state": state,
            "states": AssetState.choices,
            "query": query,
        },
    )


# --- Uploads --------------------------------------------------------------------------------


@permission_required("access_studio")
@require_GET
def upload(request: HttpRequest) -> HttpResponse:
    config = {
        "startUrl": reverse("studio:upload_start"),
        "maxBytes": settings.REELFLOW_MAX_UPLOAD_BYTES,
        "parallelParts": settings.STUDIO_UPLOAD_PARALLEL_PARTS,
        "extensions": sorted(sniff.VIDEO_EXTENSIONS),
        "headBytes": sniff.HEAD_BYTES,
    }
    return render(
        request,
        "studio/upload.html",
        {
            "profiles": selectors.profiles_offered(),
            "default_profile": settings.REELFLOW_DEFAULT_PROFILE,
            "open_sessions": selectors.upload_sessions_open(publisher=request.user),
            "config": config,
            "max_bytes": settings.REELFLOW_MAX_UPLOAD_BYTES,
        },
    )


def _refused(exc: UploadRefused) -> JsonResponse:
    return JsonResponse(
        {"error": exc.code, "message": exc.message, **exc.detail}, status=REFUSAL_STATUS[exc.code]
    )


def _json_body(request: HttpRequest) -> dict:
    try:
        data = json.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise UploadRefused(Refusal.INVALID, "The request body is not JSON.") from exc
    if not isinstance(data, dict):
        raise UploadRefused(Refusal.INVALID, "The request body must be a JSON object.")
    return data


def _field(data: dict, name: str, kind: type, *, default=None, max_length: int | None = None):
    value = data.get(name, default)
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise UploadRefused(Refusal.INVALID, f"'{name}' must be a {kind.__name__}.")
    if max_length is not None and len(value) > max_length:
        raise UploadRefused(Refusal.INVALID, f"'{name}' is longer than {max_length} characters.")
    return value


def _session_json(session: UploadSession, **extra) -> dict:
    return {
        "id": str(session.pk),
        "key": session.key,
        "title": session.title,
        "profile": session.profile.slug,
        "size": session.size,
        "partSize": session.part_size,
        "partsTotal": session.parts_total,
        "expiresAt": session.expires_at.isoformat(),
        "partsUrl": reverse("studio:upload_parts", args=[session.pk]),
        "completeUrl": reverse("studio:upload_complete", args=[session.pk]),
        "abortUrl": reverse("studio:upload_abort", args=[session.pk]),
        **extra,
    }


def _own_session(request: HttpRequest, session_id) -> UploadSession:
    session = selectors.upload_session_for(publisher=request.user, session_id=session_id)
    if session is None:
        raise Http404("No such upload.")
    logs.bind(trace_id=logs.trace_id_for(session.bucket, session.key))
    return session


@permission_required("access_studio")
@require_POST
def upload_start(request: HttpRequest) -> JsonResponse:
    try:
        data = _json_body(request)
        fingerprint = _field(data, "fingerprint", str, default="", max_length=64).lower()
        if fingerprint and not _FINGERPRINT.match(fingerprint):
            raise UploadRefused(Refusal.INVALID, "'fingerprint' must be a SHA-256 in hex.")
        try:
            head = base64.b64decode(_field(data, "head", str, default="", max_length=4096), validate=True)
        except ValueError as exc:  # binascii.Error, or characters outside ASCII (was a 500)
            raise UploadRefused(Refusal.INVALID, "'head' must be base64.") from exc
        started = services.upload_start(
            publisher=request.user,
            filename=_field(data, "filename", str, max_length=1024),
            size=_field(data, "size", int),
            last_modified_ms=_field(data, "lastModified", int, default=0),
            fingerprint=fingerprint,
            content_type=_field(data, "contentType", str, default="", max_length=100),
            title=_field(data, "title", str, default="", max_length=200),
            profile_slug=_field(
                data, "profile", str, default=settings.REELFLOW_DEFAULT_PROFILE, max_length=50
            ),
            head=head,
            sign_parts=PART_URLS_WITH_START,
        )
    except UploadRefused as exc:
        return _refused(exc)
    logs.bind(trace_id=logs.trace_id_for(started.session.bucket, started.session.key))
    logger.info("upload %s started for %s", started.session.pk, started.session.key)
    parts = [{"number": n, "size": size} for n, size in sorted(started.parts_stored.items())]
    return JsonResponse(
        _session_json(
            started.session,
            resumed=started.resumed,
            partsStored=parts,
            notice=started.notice,
            partUrls={str(n): url for n, url in started.part_urls.items()},
            expiresIn=settings.STUDIO_UPLOAD_PART_URL_SECONDS,
        ),
        status=200 if started.resumed else 201,
    )


@permission_required("access_studio")
@require_POST
def upload_parts(request: HttpRequest, session_id) -> JsonResponse:
    session = _own_session(request, session_id)
    try:
        numbers = _field(_json_body(request), "parts", list)
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
            raise UploadRefused(Refusal.INVALID, "'parts' must be a list of part numbers.")
        urls = services.upload_parts_sign(session=session, part_numbers=numbers)
    except UploadRefused as exc:
        return _refused(exc)
    return JsonResponse(
        {
            "urls": {str(n): url for n, url in urls.items()},
            "expiresIn": settings.STUDIO_UPLOAD_PART_URL_SECONDS,
        }
    )


@permission_required("access_studio")
@require_POST
def upload_complete(request: HttpRequest, session_id) -> JsonResponse:
    session = _own_session(request, session_id)
    try:
        asset = services.upload_complete(session=session)
    except UploadRefused as exc:
        return _refused(exc)
    return JsonResponse(
        {"asset": asset.pk, "title": asset.title, "assetUrl": reverse("studio:asset", args=[asset.pk])}
    )


@permission_required("access_studio")
@require_POST
def upload_abort(request: HttpRequest, session_id) -> JsonResponse:
    session = services.upload_abort(session=_own_session(request, session_id), actor=request.user)
    return JsonResponse({"id": str(session.pk), "state": session.state})


# --- One asset ------------------------------------------------------------------------------


def _visible_asset(request: HttpRequest, asset_id: int):
    asset = pipeline_selectors.asset_visible_to(asset_id=asset_id, user=request.user)
    if asset is None:
        raise Http404("No such asset.")
    return asset


def _preview_context(asset, job) -> dict:
    """The player over what is ready so far, while the asset's latest job still encodes."""
    package = playback.preview_package(job) if job is not None else None
    if package is None:
        return {}
    return {
        "preview": job,
        "hls_url": reverse("studio:preview", args=[asset.pk, package.master]),
        "preview_rungs": list(
            pipeline_selectors.job_renditions(job_id=job.pk).filter(kind=RenditionKind.VIDEO, state=RenditionState.READY)
        ),
    }


def _player_context(request: HttpRequest, asset, published, *, job=None) -> dict:
    if published is None:
        return _preview_context(asset, job)
    renditions = list(pipeline_selectors.job_renditions(job_id=published.pk))
    downloads = [
        {"what": "source", "label": "Original upload", "detail": PurePosixPath(asset.source_key).suffix}
    ]
    for rendition in renditions:
        if rendition.kind == RenditionKind.VIDEO:
            detail = f"{rendition.width}×{rendition.height}, {rendition.bitrate_kbps or '?'} kb/s, video only"
        else:
            detail = f"{rendition.bitrate_kbps or '?'} kb/s, audio only"
        downloads.append({"what": rendition.name, "label": rendition.name, "detail": detail})
    downloads.append({"what": "poster", "label": "Poster", "detail": "JPEG"})
    return {
        "published": published,
        "hls_url": reverse("studio:hls", args=[asset.pk, playback.MASTER]),
        "sprite_url": reverse("studio:hls", args=[asset.pk, playback.SPRITE_VTT]),
        "poster_url": s3.presign_get(settings.S3_BUCKET_MEDIA, asset.poster_key) if asset.poster_key else "",
        "downloads": downloads,
    }


@asset_viewer_required
@require_GET
def asset(request: HttpRequest, asset_id: int) -> HttpResponse:
    asset = _visible_asset(request, asset_id)
    job = pipeline_selectors.job_latest(asset=asset)
    published = pipeline_selectors.job_published_latest(asset=asset)
    context = {
        "asset": asset,
        "job": job,
        "timeline": selectors.asset_timeline(asset=asset),
        "socket_path": f"/ws/studio/assets/{asset.pk}/",
        "player_url": reverse("studio:asset_player", args=[asset.pk]),
        "is_owner": asset.publisher_id == request.user.pk,
        "review": job.reviews.order_by("-created_at").first() if job else None,
        "artifacts": pipeline_selectors.job_artifacts(job_id=job.pk) if job else [],
        **_player_context(request, asset, published, job=job),
        **delivery_views.card_context(asset=asset, user=request.user),
    }
    return render(request, "studio/asset.html", context)


@asset_viewer_required
@require_GET
def asset_player(request: HttpRequest, asset_id: int) -> HttpResponse:
    """The player and downloads, for the asset page to insert when its job publishes; before
    that, the preview player over the renditions ready so far."""
    asset = _visible_asset(request, asset_id)
    published = pipeline_selectors.job_published_latest(asset=asset)
    context = _player_context(request, asset, published, job=pipeline_selectors.job_latest(asset=asset))
    if not context:
        raise Http404("Nothing can be played for this asset yet.")
    return render(request, "studio/_player.html", {"asset": asset, **context})


@asset_viewer_required
@require_GET
def asset_quality(request: HttpRequest, asset_id: int) -> HttpResponse:
    """The quality panel of the asset's latest job, for the page to swap in as measurements end."""
    asset = _visible_asset(request, asset_id)
    job = pipeline_selectors.job_latest(asset=asset)
    if job is None:
        raise Http404("This asset has no job yet.")
    return render(request, "pipeline/_quality.html", {"job": job})


@asset_viewer_required
@require_GET
def hls(request: HttpRequest, asset_id: int, path: str) -> HttpResponse:
    """HLS playlists (and the sprite's WebVTT) of the published package, URIs rewritten."""
    asset = _visible_asset(request, asset_id)
    job = pipeline_selectors.job_published_latest(asset=asset)
    if job is None:
        raise Http404("Nothing is published for this asset yet.")
    package = playback.published_package(job)
    if path == playback.SPRITE_VTT:
        return _playlist_response(lambda: playback.sprite_vtt_for(package=package), "text/vtt; charset=utf-8")
    return _playlist_response(
        lambda: playback.playlist_for(
            package=package, path=path, playlist_url=lambda p: reverse("studio:hls", args=[asset.pk, p])
        ),
        "application/vnd.apple.mpegurl",
    )


@asset_viewer_required
@require_GET
def preview(request: HttpRequest, asset_id: int, path: str) -> HttpResponse:
    """HLS playlists of the latest job's preview (the renditions ready so far), URIs rewritten."""
    asset = _visible_asset(request, asset_id)
    job = pipeline_selectors.job_latest(asset=asset)
    package = playback.preview_package(job) if job is not None else None
    if package is None:
        raise Http404("This asset has no preview.")
    return _playlist_response(
        lambda: playback.playlist_for(
            package=package, path=path, playlist_url=lambda p: reverse("studio:preview", args=[asset.pk, p])
        ),
        "application/vnd.apple.mpegurl",
    )


def _playlist_response(make_text, content_type: str) -> HttpResponse:
    try:
        text = make_text()
    except playback.PlaylistNotFound as exc:
        raise Http404(str(exc)) from exc
    response = HttpResponse(text, content_type=content_type)
    # Private (it carries signed URLs) and short: the URLs inside outlive it by far.
    response["Cache-Control"] = "private, max-age=60"
    return response


@asset_viewer_required
@require_GET
def download(request: HttpRequest, asset_id: int, what: str) -> HttpResponseRedirect:
    """Redirect to a presigned download of the source, a rendition or the poster."""
    asset = _visible_asset(request, asset_id)
    stem = slugify(asset.title) or f"asset-{asset.pk}"
    if what == "source":
        bucket, key = asset.source_bucket, asset.source_key
        filename = f"{stem}{PurePosixPath(key).suffix}"
    elif what == "poster" and asset.poster_key:
        bucket, key, filename = settings.S3_BUCKET_MEDIA, asset.poster_key, f"{stem}-poster.jpg"
    else:
        job = pipeline_selectors.job_published_latest(asset=asset)
        rendition = (
            pipeline_selectors.job_renditions(job_id=job.pk).filter(name=what).exclude(output_key="").first()
            if job
            else None
        )
        if rendition is None:
            raise Http404("No such download.")
        bucket, key = settings.S3_BUCKET_MEDIA, rendition.output_key
        filename = f"{stem}-{rendition.name}{PurePosixPath(key).suffix}"
    return HttpResponseRedirect(playback.download_url(bucket=bucket, key=key, filename=filename))


@asset_viewer_required
@require_GET
def lineage(request: HttpRequest, asset_id: int, artifact_id: int) -> HttpResponse:
    """One artifact's lineage: what it was made from, back to the source object, and what was
    made from it, drawn as a graph; each node's recorded inputs (command, versions) below."""
    asset = _visible_asset(request, asset_id)
    artifact = Artifact.objects.filter(pk=artifact_id, job__asset=asset).first()
    if artifact is None:
        raise Http404("No such artifact for this asset.")
    graph = pipeline_selectors.artifact_lineage(artifact=artifact)
    details = []
    for node in graph.nodes:
        if node.artifact is None:
            continue
        inputs = dict(node.artifact.inputs or {})
        command = inputs.pop("command", "")
        details.append({
            "node": node,
            "command": pipeline_selectors.redact_signed_urls(command if isinstance(command, str) else " ".join(command)),
            "inputs": json.dumps(inputs, indent=2, sort_keys=True, default=str),
        })
    return render(request, "studio/lineage.html", {
        "asset": asset, "artifact": artifact, "graph": graph, "details": details,
        "is_owner": asset.publisher_id == request.user.pk,
    })
