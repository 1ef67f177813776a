"""Webhook endpoints of the token's publisher: list, create (the secret is in the answer once),
delete. The same services and SSRF checks as Studio → Webhooks."""

from django.http import HttpRequest
from ninja import Router, Status

from api.v1.auth import publisher, write_required
from api.v1.errors import ERROR_CODES, ApiError, ErrorOut, not_found
from api.v1.schemas import WebhookIn, WebhookOut
from webhooks import selectors as webhook_selectors
from webhooks import services as webhook_services
from webhooks.models import Endpoint
from webhooks.services import WebhookRefused

router = Router(tags=["webhooks"])


def endpoint_out(endpoint: Endpoint, secret: str | None = None) -> dict:
    return {
        "id": endpoint.pk, "url": endpoint.url, "description": endpoint.description, "events": endpoint.event_types,
        "state": endpoint.state, "signing": endpoint.signing, "created_at": endpoint.created_at, "secret": secret,
    }  # fmt: skip


@router.get("/webhooks", response={200: list[WebhookOut], ERROR_CODES: ErrorOut})
def webhooks_list(request: HttpRequest):
    return [endpoint_out(e) for e in webhook_selectors.endpoints_of(owner=publisher(request))]


@router.post("/webhooks", response={201: WebhookOut, ERROR_CODES: ErrorOut})
def webhook_create(request: HttpRequest, payload: WebhookIn):
    write_required(request)
    try:
        endpoint, secret = webhook_services.endpoint_create(
            owner=publisher(request), url=payload.url, description=payload.description, types=payload.events,
            signing=payload.signing,
        )  # fmt: skip
    except WebhookRefused as exc:
        raise ApiError(400, "invalid", str(exc)) from exc
    return Status(201, endpoint_out(endpoint, secret))


@router.delete("/webhooks/{endpoint_id}", response={204: None, ERROR_CODES: ErrorOut})
def webhook_delete(request: HttpRequest, endpoint_id: int):
    write_required(request)
    endpoint = webhook_selectors.endpoint_for(endpoint_id=endpoint_id, owner=publisher(request))
    if endpoint is None:
        raise not_found("webhook endpoint")
    webhook_services.endpoint_delete(endpoint=endpoint, actor=publisher(request))
    return Status(204, None)
