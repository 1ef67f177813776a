"""Playback anyone can open (no session): the package files behind a playback URL, the embed
page and oEmbed. Each request checks the playback id, its policy, the token and any takedown
afresh, so a change refuses the very next request."""

import urllib.parse

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse, StreamingHttpResponse
from django.shortcuts import render
from django.urls import Resolver404, resolve, reverse
from django.utils.html import escape
from django.views.decorators.clickjacking import xframe_options_exempt
from django.views.decorators.http import require_GET, require_http_methods

from core import s3
from delivery import downloads, media, selectors
from delivery.selectors import PUBLIC_TOKEN, Unplayable
from security.middleware import content_security_policy

# Players on other origins (a CMS page with its own hls.js or dash.js) read these URLs too: the
# token in the path is the credential, never a cookie, so any origin may read them.
_CORS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": "Content-Length, Content-Range, Accept-Ranges",
}


def _refusal(status: int, code: str, message: str) -> JsonResponse:
    response = JsonResponse({"error": code, "message": message}, status=status)
    for name, value in _CORS.items():
        response[name] = value
    response["Cache-Control"] = "no-store"
    return response


@require_http_methods(["GET", "HEAD", "OPTIONS"])
def play(request: HttpRequest, playback_id: str, token: str, name: str) -> HttpResponse:
    if request.method == "OPTIONS":
        response = HttpResponse(status=204)
        response["Access-Control-Allow-Methods"] = "GET, HEAD, OPTIONS"
        response["Access-Control-Allow-Headers"] = "Range"
        response["Access-Control-Max-Age"] = "86400"
        for header, value in _CORS.items():
            response[header] = value
        return response
    if not media.NAME.match(name):
        return _refusal(404, "not_found", "Not a file of this video's package.")
    try:
        found = selectors.playable(playback_id=playback_id, token=token)
    except Unplayable as exc:
        return _refusal(exc.status, exc.code, exc.message)
    try:
        if media.suffix(name) in media.TEXT_TYPES:
            response = HttpResponse(media.text_read(found.folder, name), content_type=media.TEXT_TYPES[media.suffix(name)])
            response["Cache-Control"] = "private, max-age=10"
        elif media.suffix(name) in media.MEDIA_TYPES:
            response = _media_response(request, found.folder, name)
        else:
            return _refusal(404, "not_found", "Not a file of this video's package.")
    except media.FileMissing:
        return _refusal(404, "not_found", f"{name} is not in this video's package.")
    except media.RangeInvalid as exc:
        return _refusal(416, "range_invalid", str(exc))
    for header, value in _CORS.items():
        response[header] = value
    return response


def _media_response(request: HttpRequest, folder: str, name: str) -> HttpResponse:
    byte_range = media.range_check(request.headers.get("Range", ""))
    answer = media.media_open(folder, name, byte_range=byte_range, head=request.method == "HEAD")
    content_type = media.MEDIA_TYPES[media.suffix(name)]
    if answer.get("Body") is None:
        response = HttpResponse(content_type=content_type, status=206 if byte_range else 200)
    else:
        # Under daphne an async stream (a sync one would be read whole into memory first).
        chunks = media.body_chunks(answer["Body"]) if isinstance(request, ASGIRequest) else s3.iter_body(answer["Body"])
        response = StreamingHttpResponse(chunks, content_type=content_type, status=206 if byte_range else 200)
    response["Content-Length"] = str(answer["ContentLength"])
    if byte_range and answer.get("ContentRange"):
        response["Content-Range"] = answer["ContentRange"]
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = "private, max-age=3600"
    return response


@require_GET
def download(request: HttpRequest, playback_id: str, token: str, rung: str) -> HttpResponse:
    """Redirect to a short-lived presigned S3 URL of the rung's MP4 (video and audio), if the
    publisher made that rung downloadable; 503 with Retry-After while it is being prepared."""
    try:
        found = selectors.playable(playback_id=playback_id, token=token)
    except Unplayable as exc:
        return _refusal(exc.status, exc.code, exc.message)
    if rung not in found.delivery.downloadable:
        offered = ", ".join(found.delivery.downloadable) or "none"
        return _refusal(404, "not_downloadable", f"{rung} is not offered as a download (offered: {offered}).")
    if not downloads.download_ready(found.job, rung):
        downloads.downloads_request(job=found.job, rungs=[rung])
        response = _refusal(503, "preparing", "This download is being prepared: try again in a few seconds.")
        response["Retry-After"] = "10"
        return response
    return HttpResponseRedirect(downloads.download_url(job=found.job, rung=rung, title=found.asset.title))


def _embed_csp(publisher) -> str:
    """The site's policy (security.middleware), except that the origins the publisher listed
    may frame this page."""
    ancestors = " ".join(["'self'", *selectors.embed_origins(publisher=publisher)])
    return content_security_policy().replace("frame-ancestors 'none'", f"frame-ancestors {ancestors}")


@xframe_options_exempt
@require_GET
def embed(request: HttpRequest, playback_id: str) -> HttpResponse:
    """The player alone, for an iframe on the origins the publisher listed (frame-ancestors)."""
    token = request.GET.get("token", "") or PUBLIC_TOKEN
    try:
        found = selectors.playable(playback_id=playback_id, token=token)
    except Unplayable as exc:
        response = render(request, "delivery/embed_refused.html", {"message": exc.message}, status=exc.status)
        # The reason is shown inside whatever frame asked (it reveals nothing the URL did not).
        response["Content-Security-Policy"] = content_security_policy().replace("frame-ancestors 'none'", "frame-ancestors *")
        return response

    def url(name: str) -> str:
        return reverse("delivery:play", args=[playback_id, token, name])

    dash = url("manifest.mpd") if found.job.dash_manifest_key else ""
    config = {"hls": url("master.m3u8"), "dash": dash, "player": "dash" if request.GET.get("player") == "dash" and dash else "hls"}
    response = render(request, "delivery/embed.html", {
        "title": found.asset.title,
        "poster": url("poster.jpg") if found.asset.poster_key else "",
        "sprite": url("sprite.vtt"),
        "config": config,
        "use_dash": config["player"] == "dash",
    })  # fmt: skip
    response["Content-Security-Policy"] = _embed_csp(found.asset.publisher)
    return response


def _embed_target(url: str) -> tuple[str, str] | None:
    """(playback id, token) of an embed or playback URL of this site, else None."""
    parts = urllib.parse.urlsplit(url)
    site = urllib.parse.urlsplit(settings.SITE_URL)
    if parts.scheme not in ("http", "https") or (parts.netloc and parts.netloc != site.netloc):
        return None
    try:
        match = resolve(parts.path or "/")
    except Resolver404:
        return None
    if match.view_name == "delivery:embed":
        token = urllib.parse.parse_qs(parts.query).get("token", [PUBLIC_TOKEN])[0]
        return match.kwargs["playback_id"], token
    if match.view_name == "delivery:play":
        return match.kwargs["playback_id"], match.kwargs["token"]
    return None


def _dimension(request: HttpRequest, name: str, default: int) -> int:
    try:
        value = int(request.GET.get(name, default))
    except ValueError:
        return default
    return max(64, min(value, 3840))


@require_GET
def oembed(request: HttpRequest) -> HttpResponse:
    """oEmbed 1.0 (https://oembed.com): a `video` answer whose html is the embed's iframe."""
    if request.GET.get("format", "json") != "json":
        return _refusal(501, "format_unsupported", "Only format=json is served.")
    target = _embed_target(request.GET.get("url", ""))
    if target is None:
        return _refusal(404, "not_found", "url must be an embed or playback URL of this site.")
    playback_id, token = target
    try:
        found = selectors.playable(playback_id=playback_id, token=token)
    except Unplayable as exc:
        return _refusal(404 if exc.status != 403 else 401, exc.code, exc.message)
    aspect = (found.asset.height or 9) / (found.asset.width or 16)
    width = _dimension(request, "maxwidth", 640)
    height = round(width * aspect)
    if "maxheight" in request.GET and height > _dimension(request, "maxheight", height):
        height = _dimension(request, "maxheight", height)  # the frame keeps the video's shape
        width = round(height / aspect)
    src = settings.SITE_URL + reverse("delivery:embed", args=[playback_id])
    if token != PUBLIC_TOKEN:
        src += f"?token={urllib.parse.quote(token)}"
    title = found.asset.title
    html = (
        f'<iframe src="{src}" width="{width}" height="{height}" title="{escape(title)}" '
        'frameborder="0" allow="autoplay; fullscreen; picture-in-picture" allowfullscreen></iframe>'
    )
    answer = {
        "version": "1.0", "type": "video", "provider_name": "Reelflow", "provider_url": settings.SITE_URL,
        "title": title, "width": width, "height": height, "html": html,
    }  # fmt: skip
    if found.asset.poster_key:
        answer["thumbnail_url"] = settings.SITE_URL + reverse("delivery:play", args=[playback_id, token, "poster.jpg"])
    response = JsonResponse(answer)
    response["Access-Control-Allow-Origin"] = "*"
    return response
