"""Roles: the three kinds of people Reelflow serves, as Django groups with permissions.

Views check permissions (never group names), so a custom group can be given a subset. The
permissions live on core.Event's Meta so they exist without a model of their own.
"""

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db import models


class Role(models.TextChoices):
    PUBLISHER = "Publisher", "Publisher"
    OPERATIONS = "Operations", "Operations"
    SECURITY = "Security", "Security"


# Publishers in this group pass the "publisher is verified" publish rule. It carries no
# permission: verification is a fact about a publisher that rules read, not an access right.
VERIFIED_PUBLISHERS_GROUP = "Verified publishers"

# permission codename (app "core") -> human name
PERMISSIONS = {
    "access_studio": "Can upload and manage own assets in the studio",
    "access_operations": "Can run the operations console (jobs, workers, backups)",
    "access_security": "Can review security violations and alerts",
}

ROLE_PERMISSIONS: dict[str, list[str]] = {
    Role.PUBLISHER: ["access_studio"],
    Role.OPERATIONS: ["access_operations"],
    Role.SECURITY: ["access_security"],
}

ROLE_HOME = {
    "access_operations": "console:home",
    "access_security": "security:home",
    "access_studio": "studio:home",
}


def user_roles(user) -> list[str]:
    if not user.is_authenticated:
        return []
    return [perm for perm in PERMISSIONS if user.has_perm(f"core.{perm}")]


def home_url_name(user) -> str | None:
    """The page a user lands on after login: the first role it holds, operations first."""
    for perm, url_name in ROLE_HOME.items():
        if user.has_perm(f"core.{perm}"):
            return url_name
    return None


def permission_required(perm: str) -> Callable:
    """Anonymous users go to the login page; signed-in users without `perm` get 403."""

    def decorator(view):
        @wraps(view)
        def wrapped(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not request.user.has_perm(f"core.{perm}"):
                raise PermissionDenied
            return view(request, *args, **kwargs)

        wrapped.required_permission = perm
        return wrapped

    return decorator
