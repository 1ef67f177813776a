"""Studio → API & embeds: the publisher's API tokens (create, list, revoke; a new token is shown
once) and the origins allowed to frame their embeds."""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_POST

from api import services
from api.models import ApiToken, TokenScope
from core.roles import permission_required
from delivery import selectors as delivery_selectors
from delivery import services as delivery_services

_SHOW_ONCE = "api_token_new"


@permission_required("access_studio")
@require_GET
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "api/tokens.html", {
        "tokens": ApiToken.objects.filter(publisher=request.user).order_by("revoked_at", "-created_at")[:100],
        "new_token": request.session.pop(_SHOW_ONCE, None),
        "scopes": TokenScope.choices,
        "origins": "\n".join(delivery_selectors.embed_origins(publisher=request.user)),
    })  # fmt: skip


@permission_required("access_studio")
@require_POST
def token_new(request: HttpRequest) -> HttpResponse:
    try:
        row, token = services.token_create(
            publisher=request.user, name=request.POST.get("name", ""), scope=request.POST.get("scope", "")
        )
    except services.TokenRefused as exc:
        messages.error(request, f"No token created: {exc}.")
        return HttpResponseRedirect(reverse("api_tokens:home"))
    # Kept in the session only until the page shows it once.
    request.session[_SHOW_ONCE] = {"name": row.name, "token": token}
    return HttpResponseRedirect(reverse("api_tokens:home"))


@permission_required("access_studio")
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = ApiToken.objects.filter(pk=token_id, publisher=request.user).first()
    if token is None:
        raise Http404("No such token.")
    services.token_revoke(token=token, actor=request.user)
    messages.success(request, f"Token “{token.name}” ({token.prefix}) is revoked: it no longer works.")
    return HttpResponseRedirect(reverse("api_tokens:home"))


@permission_required("access_studio")
@require_POST
def embed_origins(request: HttpRequest) -> HttpResponse:
    origins = [line.strip() for line in request.POST.get("origins", "").splitlines() if line.strip()]
    try:
        delivery_services.embed_origins_set(publisher=request.user, origins=origins)
    except delivery_services.DeliveryRefused as exc:
        messages.error(request, f"Origins not saved: {exc}.")
    else:
        messages.success(request, "Embed origins saved.")
    return HttpResponseRedirect(reverse("api_tokens:home"))
