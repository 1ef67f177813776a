"""HTTP intake for storage events. Not a page: machines post here, with a bearer token."""

import hmac
import json
import logging

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from pipeline import events
from pipeline.models import IngestEvent

logger = logging.getLogger(__name__)


def _authorized(request: HttpRequest) -> bool:
    expected = settings.S3_EVENTS_TOKEN
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    # No configured token means no webhook at all, never an open one.
    return bool(expected) and scheme.lower() == "bearer" and hmac.compare_digest(token.encode(), expected.encode())


@csrf_exempt  # authenticated by its bearer token, not by a browser session
@require_POST
def s3_events(request: HttpRequest) -> JsonResponse:
    """The SeaweedFS filer webhook, or any poster of S3 event notification documents."""
    if not _authorized(request):
        logger.warning("storage event refused: bad or missing bearer token from %s", request.META.get("REMOTE_ADDR"))
        return JsonResponse({"error": "a valid bearer token is required"}, status=401)
    try:
        body = json.loads(request.body)
        if isinstance(body, dict) and "Records" in body:
            created, source = events.parse_s3_notification(body), IngestEvent.Source.SQS
        else:
            created, source = events.parse_filer_event(body), IngestEvent.Source.FILER
    except (ValueError, events.EventRejected) as exc:
        logger.warning("storage event refused: %s", exc)
        return JsonResponse({"error": f"malformed event: {exc}"}, status=400)
    started, rejected = [], []
    for item in created:
        try:
            event = events.object_created_receive(created=item, source=source)
        except events.EventRejected as exc:
            logger.warning("storage event rejected: %s", exc)
            rejected.append(str(exc))
            continue
        if event is not None:
            started.append(event.job_id)
    if rejected and not started:
        return JsonResponse({"error": "; ".join(rejected)}, status=422)
    return JsonResponse({"jobs": started, "rejected": rejected}, status=202)
