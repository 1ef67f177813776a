"""/ops/notifications/: channels per team, routes, recent messages with every attempt, the test
button. Operations staff only; every change is a CSRF-protected POST."""

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from core.roles import permission_required
from notifications import selectors, services
from notifications.forms import ChannelForm, RouteForm
from notifications.models import Channel, Route


def _page(request: HttpRequest, *, channel_form=None, route_form=None, status: int = 200) -> HttpResponse:
    return render(
        request,
        "notifications/home.html",
        {
            "channels": selectors.channels_overview(),
            "routes": selectors.routes(),
            "recent": selectors.messages_recent(),
            "channel_form": channel_form or ChannelForm(),
            "route_form": route_form or RouteForm(),
        },
        status=status,
    )


@permission_required("access_operations")
def home(request: HttpRequest) -> HttpResponse:
    return _page(request)


@permission_required("access_operations")
@require_POST
def channel_add(request: HttpRequest) -> HttpResponse:
    form = ChannelForm(request.POST)
    if not form.is_valid():
        return _page(request, channel_form=form, status=400)
    channel = services.channel_create(**form.cleaned_data, actor=request.user)
    messages.success(request, f"Channel {channel.team}/{channel.name} added. Send it a test.")
    return redirect("notifications:home")


@permission_required("access_operations")
@require_POST
def channel_test(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = get_object_or_404(Channel, pk=channel_id)
    message = services.channel_test(channel=channel, actor=request.user)
    messages.success(
        request,
        f"Test message #{message.pk} queued for {channel.team}/{channel.name}; its outcome shows below.",
    )
    return redirect("notifications:home")


@permission_required("access_operations")
@require_POST
def channel_delete(request: HttpRequest, channel_id: int) -> HttpResponse:
    channel = get_object_or_404(Channel, pk=channel_id)
    services.channel_delete(channel=channel, actor=request.user)
    messages.success(request, f"Channel {channel.team}/{channel.name} deleted.")
    return redirect("notifications:home")


@permission_required("access_operations")
@require_POST
def route_add(request: HttpRequest) -> HttpResponse:
    form = RouteForm(request.POST)
    if not form.is_valid():
        return _page(request, route_form=form, status=400)
    services.route_create(**form.cleaned_data, actor=request.user)
    messages.success(request, f"Route to team {form.cleaned_data['team']} added.")
    return redirect("notifications:home")


@permission_required("access_operations")
@require_POST
def route_delete(request: HttpRequest, route_id: int) -> HttpResponse:
    services.route_delete(route=get_object_or_404(Route, pk=route_id), actor=request.user)
    messages.success(request, "Route deleted.")
    return redirect("notifications:home")
