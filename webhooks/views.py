"""Webhook pages. Publishers manage their own endpoints under /studio/webhooks/ (another's is a
404); operations staff see every endpoint and delivery under /ops/webhooks/ and may redeliver.
Each view parses, authorizes, calls one selector or service, and renders; every action is a
CSRF-protected POST that redirects back with a message."""

import json

from django.conf import settings
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from core.roles import permission_required
from webhooks import event_types, payloads, selectors, services
from webhooks.forms import DeliveryFilterForm, EndpointForm, RotateForm
from webhooks.models import Endpoint, EndpointState

STUDIO = "access_studio"
OPS = "access_operations"
# The session key holding a secret until the page that shows it once is rendered.
REVEAL_KEY = "webhooks_reveal"


def _own_endpoint(request: HttpRequest, endpoint_id: int) -> Endpoint:
    endpoint = selectors.endpoint_for(endpoint_id=endpoint_id, owner=request.user)
    if endpoint is None:
        raise Http404("No such webhook endpoint.")
    return endpoint


def _reveal_later(request: HttpRequest, endpoint: Endpoint, secret: str) -> None:
    # In the server-side session, not a message cookie; popped by the next endpoint page.
    reveal = request.session.get(REVEAL_KEY, {})
    reveal[str(endpoint.pk)] = secret
    request.session[REVEAL_KEY] = reveal


def _deliveries_page(request: HttpRequest, **filters):
    form = DeliveryFilterForm(request.GET)
    state = form.state_value()
    deliveries = selectors.deliveries_of(state=state, **filters)
    page = Paginator(deliveries, settings.WEBHOOKS_DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    return form, state, page


# --- Publisher pages ------------------------------------------------------------------------------


@permission_required(STUDIO)
@require_GET
def endpoints(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "webhooks/endpoints.html",
        {
            "endpoints": selectors.endpoints_of(owner=request.user),
            "max_endpoints": settings.WEBHOOKS_MAX_ENDPOINTS,
        },
    )


@permission_required(STUDIO)
@require_http_methods(["GET", "POST"])
def endpoint_new(request: HttpRequest) -> HttpResponse:
    form = EndpointForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            endpoint, secret = services.endpoint_create(
                owner=request.user,
                url=form.cleaned_data["url"],
                description=form.cleaned_data["description"],
                types=form.cleaned_data["event_types"],
                actor=request.user,
            )
        except services.WebhookRefused as exc:
            form.add_error(None, str(exc))
        else:
            _reveal_later(request, endpoint, secret)
            messages.success(request, "Endpoint added. Copy its signing secret now: it is shown only once.")
            return redirect("webhooks:endpoint", endpoint_id=endpoint.pk)
    return render(
        request,
        "webhooks/endpoint_form.html",
        {"form": form, "endpoint": None, "families": event_types.FAMILIES},
    )


@permission_required(STUDIO)
@require_http_methods(["GET", "POST"])
def endpoint_edit(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _own_endpoint(request, endpoint_id)
    initial = {"url": endpoint.url, "description": endpoint.description, "event_types": endpoint.event_types}
    form = EndpointForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            services.endpoint_update(
                endpoint=endpoint,
                url=form.cleaned_data["url"],
                description=form.cleaned_data["description"],
                types=form.cleaned_data["event_types"],
                actor=request.user,
            )
        except services.WebhookRefused as exc:
            form.add_error(None, str(exc))
        else:
            messages.success(request, "Endpoint saved.")
            return redirect("webhooks:endpoint", endpoint_id=endpoint.pk)
    return render(
        request,
        "webhooks/endpoint_form.html",
        {"form": form, "endpoint": endpoint, "families": event_types.FAMILIES},
    )


@never_cache
@permission_required(STUDIO)
@require_GET
def endpoint(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _own_endpoint(request, endpoint_id)
    reveal = request.session.get(REVEAL_KEY, {})
    secret = reveal.pop(str(endpoint.pk), "")
    if secret:
        request.session[REVEAL_KEY] = reveal
    form, state, page = _deliveries_page(request, endpoint=endpoint)
    return render(
        request,
        "webhooks/endpoint.html",
        {
            "endpoint": endpoint,
            "secret": secret,
            "rotate_form": RotateForm(),
            "filter_form": form,
            "state": state,
            "page": page,
            "ops": False,
        },
    )


def _act(request: HttpRequest, endpoint_id: int, action, success: str) -> HttpResponse:
    endpoint = _own_endpoint(request, endpoint_id)
    try:
        action(endpoint=endpoint, actor=request.user)
    except services.WebhookRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, success)
    return redirect("webhooks:endpoint", endpoint_id=endpoint.pk)


@permission_required(STUDIO)
@require_POST
def endpoint_disable(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    return _act(
        request,
        endpoint_id,
        services.endpoint_disable,
        "Endpoint disabled: no new events are sent to it, and pending ones wait.",
    )


@permission_required(STUDIO)
@require_POST
def endpoint_enable(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    return _act(
        request,
        endpoint_id,
        services.endpoint_enable,
        "Endpoint enabled: new events are sent to it, and pending ones resume.",
    )


@permission_required(STUDIO)
@require_POST
def endpoint_ping(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    return _act(
        request,
        endpoint_id,
        services.endpoint_ping,
        "Test ping queued: its delivery appears below within seconds.",
    )


@permission_required(STUDIO)
@require_POST
def endpoint_rotate(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _own_endpoint(request, endpoint_id)
    form = RotateForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose when the old secret stops working, then rotate.")
        return redirect("webhooks:endpoint", endpoint_id=endpoint.pk)
    try:
        secret = services.endpoint_secret_rotate(
            endpoint=endpoint, actor=request.user, overlap_seconds=form.cleaned_data["overlap"]
        )
    except services.WebhookRefused as exc:
        messages.error(request, str(exc))
    else:
        _reveal_later(request, endpoint, secret)
        messages.success(request, "New signing secret made. Copy it now: it is shown only once.")
    return redirect("webhooks:endpoint", endpoint_id=endpoint.pk)


@permission_required(STUDIO)
@require_http_methods(["GET", "POST"])
def endpoint_delete(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    endpoint = _own_endpoint(request, endpoint_id)
    if request.method == "POST":
        services.endpoint_delete(endpoint=endpoint, actor=request.user)
        messages.success(request, f"Endpoint {endpoint.url} deleted, with its delivery history.")
        return redirect("webhooks:endpoints")
    return render(
        request,
        "webhooks/endpoint_delete.html",
        {
            "endpoint": endpoint,
            "deliveries": endpoint.deliveries.count(),
        },
    )


@permission_required(STUDIO)
@require_GET
def delivery(request: HttpRequest, delivery_id: int) -> HttpResponse:
    found = selectors.delivery_for(delivery_id=delivery_id, owner=request.user)
    if found is None:
        raise Http404("No such delivery.")
    return _delivery_page(request, found, ops=False)


@permission_required(STUDIO)
@require_POST
def delivery_redeliver(request: HttpRequest, delivery_id: int) -> HttpResponse:
    found = selectors.delivery_for(delivery_id=delivery_id, owner=request.user)
    if found is None:
        raise Http404("No such delivery.")
    return _redeliver(request, found, "webhooks:delivery")


def _delivery_page(request: HttpRequest, delivery, *, ops: bool) -> HttpResponse:
    body = payloads.body_for(delivery.event)
    return render(
        request,
        "webhooks/delivery.html",
        {
            "delivery": delivery,
            "endpoint": delivery.endpoint,
            "body": json.dumps(json.loads(body), indent=2, sort_keys=True),
            "attempts": delivery.attempt_list,
            "user_agent": payloads.USER_AGENT,
            "may_redeliver": delivery.endpoint.state == EndpointState.ACTIVE,
            "ops": ops,
        },
    )


def _redeliver(request: HttpRequest, delivery, url_name: str) -> HttpResponse:
    try:
        services.delivery_redeliver(delivery=delivery, actor=request.user)
    except services.WebhookRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request, "Redelivery queued, with the same Reelflow-Delivery key. Reload for the result."
        )
    return redirect(url_name, delivery_id=delivery.pk)


# --- Operations pages (read-only, plus redelivery) -------------------------------------------------


@permission_required(OPS)
@require_GET
def ops_endpoints(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.endpoints_all(), settings.WEBHOOKS_DELIVERIES_PER_PAGE).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "webhooks/ops_endpoints.html",
        {
            "page": page,
            "counts": selectors.delivery_state_counts(),
        },
    )


@permission_required(OPS)
@require_GET
def ops_endpoint(request: HttpRequest, endpoint_id: int) -> HttpResponse:
    found = selectors.endpoint_for(endpoint_id=endpoint_id)
    if found is None:
        raise Http404("No such webhook endpoint.")
    form, state, page = _deliveries_page(request, endpoint=found)
    return render(
        request,
        "webhooks/endpoint.html",
        {
            "endpoint": found,
            "secret": "",
            "filter_form": form,
            "state": state,
            "page": page,
            "ops": True,
        },
    )


@permission_required(OPS)
@require_GET
def ops_deliveries(request: HttpRequest) -> HttpResponse:
    form, state, page = _deliveries_page(request)
    return render(
        request,
        "webhooks/ops_deliveries.html",
        {
            "filter_form": form,
            "state": state,
            "page": page,
            "counts": selectors.delivery_state_counts(),
        },
    )


@permission_required(OPS)
@require_GET
def ops_delivery(request: HttpRequest, delivery_id: int) -> HttpResponse:
    found = selectors.delivery_for(delivery_id=delivery_id)
    if found is None:
        raise Http404("No such delivery.")
    return _delivery_page(request, found, ops=True)


@permission_required(OPS)
@require_POST
def ops_delivery_redeliver(request: HttpRequest, delivery_id: int) -> HttpResponse:
    found = selectors.delivery_for(delivery_id=delivery_id)
    if found is None:
        raise Http404("No such delivery.")
    return _redeliver(request, found, "webhooks_ops:delivery")
