from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from core.health import health_report
from core.roles import home_url_name


@login_required
def home(request: HttpRequest) -> HttpResponse:
    """Send each person to the home of their role."""
    url_name = home_url_name(request.user)
    if url_name is not None:
        return redirect(url_name)
    if request.user.is_staff:
        return redirect("admin:index")
    return render(request, "core/no_role.html", status=403)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    """State of every dependency; 503 when any is down.

    Load balancers get the up/down flags; versions, endpoints and errors only go to operations
    staff, since they tell an attacker what runs here.
    """
    report = health_report()
    if not request.user.has_perm("core.access_operations"):
        report = {"ok": report["ok"], "checks": {k: {"ok": v["ok"]} for k, v in report["checks"].items()}}
    return JsonResponse(report, status=200 if report["ok"] else 503)
