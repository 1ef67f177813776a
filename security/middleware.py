"""Counts 403/404 answers to signed-in users for the probing detector."""

from django.conf import settings

from security.services.detectors import access_denied_record


class AccessDeniedMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if response.status_code in (403, 404):
            user = getattr(request, "user", None)
            if (
                user is not None
                and user.is_authenticated
                and not request.path.startswith("/" + settings.STATIC_URL.lstrip("/"))
            ):
                access_denied_record(user=user, path=request.path, status=response.status_code)
        return response
