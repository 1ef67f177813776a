from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from core.roles import permission_required


@permission_required("access_studio")
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "studio/home.html", {})
