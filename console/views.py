from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.health import health_report
from core.roles import permission_required
from core.selectors import queue_depths, workers_list


@permission_required("access_operations")
def home(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "console/home.html",
        {"health": health_report(), "queues": queue_depths(), "workers": workers_list()},
    )
