from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.roles import permission_required
from core.selectors import alerts_open


@permission_required("access_operations")
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "backups/home.html", {"alerts": alerts_open(source="backups")})
