"""Who may open studio pages: publishers their own assets, operations staff any asset."""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied

# Asset pages, playback and the progress socket: the asset's publisher, or operations staff
# (who may look at any asset). Which asset a user may see is pipeline.selectors.asset_visible_to.
ASSET_VIEWER_PERMISSIONS = ("access_studio", "access_operations")


def may_view_assets(user) -> bool:
    return user.is_authenticated and any(user.has_perm(f"core.{perm}") for perm in ASSET_VIEWER_PERMISSIONS)


def asset_viewer_required(view: Callable) -> Callable:
    """Anonymous users go to the login page; signed-in users with neither role get 403."""

    @wraps(view)
    def wrapped(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not may_view_assets(request.user):
            raise PermissionDenied
        return view(request, *args, **kwargs)

    wrapped.required_permission = "|".join(ASSET_VIEWER_PERMISSIONS)
    return wrapped
