"""The asset page's delivery card (templates/delivery/_asset_card.html, included by studio/asset.html): playback policy, the links
anyone can open, takedown and deletion. Forms POST here; each checks who may act on the asset
exactly as the asset page decides who may see it: the publisher for everything, operations
staff for takedown (they moderate; they do not delete someone's work)."""

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from delivery import services
from delivery.models import PlaybackPolicy
from pipeline import selectors as pipeline_selectors
from pipeline.models import Asset
from studio.access import asset_viewer_required


def card_context(*, asset: Asset, user) -> dict:
    """What the card shows: the policy, the links (minted now), the takedown."""
    job = pipeline_selectors.job_published_latest(asset=asset)
    urls = services.playback_urls(asset=asset, job=job)
    delivery = services.asset_delivery_ensure(asset)
    return {
        "delivery": delivery, "playback": urls, "policies": PlaybackPolicy.choices,
        "can_delete": asset.publisher_id == user.pk,
    }  # fmt: skip


def _asset(request: HttpRequest, asset_id: int) -> Asset:
    asset = pipeline_selectors.asset_visible_to(asset_id=asset_id, user=request.user)
    if asset is None:
        raise Http404("No such asset.")
    return asset


def _back(asset_id: int) -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("studio:asset", args=[asset_id]) + "#delivery")


@asset_viewer_required
@require_POST
def policy(request: HttpRequest, asset_id: int) -> HttpResponse:
    asset = _asset(request, asset_id)
    if asset.publisher_id != request.user.pk:
        raise Http404("No such asset.")
    try:
        services.asset_details_update(asset=asset, actor=request.user, policy=request.POST.get("policy", ""))
    except services.DeliveryRefused as exc:
        messages.error(request, f"Not changed: {exc}.")
    return _back(asset_id)


@asset_viewer_required
@require_POST
def takedown(request: HttpRequest, asset_id: int) -> HttpResponse:
    asset = _asset(request, asset_id)
    if request.POST.get("lift"):
        services.asset_takedown_lift(asset=asset, actor=request.user)
        messages.success(request, "Playback is allowed again.")
    else:
        reason = request.POST.get("reason", "").strip()
        if not reason:
            messages.error(request, "Say why the video is taken down (the reason is kept in the timeline).")
            return _back(asset_id)
        services.asset_takedown(asset=asset, actor=request.user, reason=reason)
        messages.success(request, "Taken down: playback, embeds and downloads are refused from now on.")
    return _back(asset_id)


@asset_viewer_required
@require_POST
def delete(request: HttpRequest, asset_id: int) -> HttpResponse:
    asset = _asset(request, asset_id)
    if asset.publisher_id != request.user.pk:
        raise Http404("No such asset.")
    if request.POST.get("confirm") != asset.title:
        messages.error(request, "Type the video's title exactly to delete it.")
        return _back(asset_id)
    title = asset.title
    services.asset_delete(asset=asset, actor=request.user)
    messages.success(request, f"“{title}” is deleted, with its media.")
    return HttpResponseRedirect(reverse("studio:home"))
