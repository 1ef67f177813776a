"""API v1: django-ninja over the same services and selectors as the pages (docs/api.md)."""

from django.conf import settings
from django.http import HttpRequest
from ninja import NinjaAPI

from api.v1 import assets, jobs, uploads, webhooks
from api.v1.auth import TokenAuth
from api.v1.errors import ERROR_CODES, ErrorOut, handlers_install
from api.v1.schemas import TokenOut

api = NinjaAPI(
    title="Reelflow API",
    version="1",
    description=(
        "Assets, direct uploads, jobs, renditions, playback URLs and webhook endpoints of the "
        "publisher who owns the token. Send `Authorization: Bearer rf_...`. Every refusal is a 4xx "
        'with `{"error": code, "message": what to fix}`.'
    ),
    urls_namespace="api-v1",
    auth=TokenAuth(),
)
handlers_install(api)
api.add_router("", assets.router)
api.add_router("", jobs.router)
api.add_router("", uploads.router)
api.add_router("", webhooks.router)


@api.get("/token", response={200: TokenOut, ERROR_CODES: ErrorOut}, tags=["token"])
def token_get(request: HttpRequest):
    """The token this request was made with."""
    token = request.auth
    return {
        "name": token.name, "prefix": token.prefix, "scope": token.scope,
        "publisher": token.publisher.get_username(), "rate_limit_per_minute": settings.API_RATE_PER_MINUTE,
    }  # fmt: skip
