from core.roles import user_roles


def navigation(request) -> dict:
    """Which sections the navigation shows: only those the user may open."""
    roles = set(user_roles(request.user)) if hasattr(request, "user") else set()
    return {"nav_roles": roles}
