"""`/metrics`: the Prometheus text format, for a scraper's token or an operations user's session."""

import hmac

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from core import metrics as recorded
from ops.metrics import ReelflowCollector


def _token_ok(request: HttpRequest) -> bool:
    expected = settings.METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if not expected or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header.removeprefix("Bearer ").encode(), expected.encode())


@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not (_token_ok(request) or request.user.has_perm("core.access_operations")):
        # 401 with the scheme for a scraper; a page for a person who is signed in without the role.
        response = HttpResponse(
            "Metrics need the operations role or 'Authorization: Bearer <METRICS_TOKEN>'.\n",
            status=403 if request.user.is_authenticated else 401,
            content_type="text/plain",
        )
        if not request.user.is_authenticated:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ReelflowCollector(recorded.client()))
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
