"""Security's middleware: the device cookie of a login, the 403/404 count for the probing
detector, and the Content-Security-Policy header on every page."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings

from security.services.detectors import access_denied_record
from security.services.logins import DEVICE_COOKIE


class DeviceCookieMiddleware:
    """Sets the device cookie a successful login issued (security.services.logins): a browser
    that signed in to an account is not locked out of it by someone guessing elsewhere."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        value = getattr(request, "security_device_cookie", "")
        if value:
            response.set_cookie(
                DEVICE_COOKIE, value, max_age=settings.SECURITY_DEVICE_COOKIE_DAYS * 86400,
                secure=settings.SESSION_COOKIE_SECURE, httponly=True, samesite="Lax",
            )  # fmt: skip
        return response


class AccessDeniedMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code in (403, 404):
            user = getattr(request, "user", None)
            if (
                user is not None
                and user.is_authenticated
                and not request.path.startswith("/" + settings.STATIC_URL.lstrip("/"))
            ):
                access_denied_record(user=user, path=request.path, status=response.status_code)
        return response


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def content_security_policy() -> str:
    """The policy: scripts and style sheets from our own origin only (no inline script at all;
    style attributes are allowed, <style> elements are not); media, images and uploads also
    from the S3 endpoint browsers reach (presigned URLs), blob: for hls.js's worker and its
    MediaSource; no plugins, no framing, forms post only here."""
    storage = _origin(settings.S3_PUBLIC_ENDPOINT_URL) or "https://*.amazonaws.com"
    extra = " ".join(settings.SECURITY_CSP_EXTRA_SOURCES)
    remote = " ".join(s for s in (storage, extra) if s)
    directives = {
        "default-src": "'self'",
        "script-src": "'self'",
        "style-src": "'self'",
        "style-src-attr": "'unsafe-inline'",  # progress bars' widths and legend swatches
        "img-src": f"'self' data: blob: {remote}",
        "media-src": f"'self' blob: {remote}",
        "connect-src": f"'self' {remote}",  # 'self' covers the page's own ws:/wss: (CSP 3)
        "worker-src": "'self' blob:",
        "font-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'self'",
        "form-action": "'self'",
        "frame-ancestors": "'none'",
    }
    return "; ".join(f"{name} {value}" for name, value in directives.items())


class ContentSecurityPolicyMiddleware:
    """Adds the header to every answer that has none (a view may set its own)."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = content_security_policy()

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.policy)
        return response
