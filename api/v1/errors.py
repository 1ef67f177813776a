"""Every refusal of the API is JSON `{"error": code, "message": words saying what to fix}` with
a 4xx status; ninja's own errors (parsing, validation, auth) are rewritten into that shape."""

from django.core.exceptions import RequestDataTooBig
from django.http import Http404, HttpRequest, HttpResponse
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError

# The refusals API v1 answers (documented on every operation; the body is always ErrorOut).
ERROR_CODES = frozenset({400, 401, 403, 404, 405, 409, 410, 413, 415, 416, 429, 451})


class ErrorOut(Schema):
    error: str
    message: str
    fields: list[dict] | None = None


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str, *, headers: dict | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.headers = status, code, message, headers or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"No {what} with this id is yours.")


def _field_errors(exc: ValidationError) -> list[dict]:
    found = []
    for item in exc.errors:
        location = [str(part) for part in item.get("loc", ()) if part not in ("body", "payload", "query", "path")]
        found.append({"field": ".".join(location) or "(body)", "problem": item.get("msg", "invalid")})
    return found


def handlers_install(api: NinjaAPI) -> None:
    def respond(request: HttpRequest, status: int, code: str, message: str, **extra) -> HttpResponse:
        return api.create_response(request, {"error": code, "message": message, **extra}, status=status)

    @api.exception_handler(ApiError)
    def api_error(request, exc: ApiError):
        response = respond(request, exc.status, exc.code, exc.message)
        for name, value in exc.headers.items():
            response[name] = value
        return response

    @api.exception_handler(ValidationError)
    def invalid(request, exc: ValidationError):
        fields = _field_errors(exc)
        words = "; ".join(f"{f['field']}: {f['problem']}" for f in fields[:5])
        return respond(request, 400, "invalid", f"The request is not valid: {words}.", fields=fields)

    @api.exception_handler(AuthenticationError)
    def unauthenticated(request, exc):
        response = respond(request, 401, "unauthorized",
                           "Send a valid, unrevoked API token: Authorization: Bearer rf_...")  # fmt: skip
        response["WWW-Authenticate"] = 'Bearer realm="reelflow"'
        return response

    @api.exception_handler(HttpError)
    def http_error(request, exc: HttpError):
        message = str(exc)
        if exc.status_code == 400 and "parse" in message.lower():
            message = "The request body is not valid JSON: send a JSON object."
        return respond(request, exc.status_code, "bad_request" if exc.status_code == 400 else "error", message)

    @api.exception_handler(Http404)
    def missing(request, exc):
        return respond(request, 404, "not_found", "No such resource in API v1 (see /api/v1/docs).")

    @api.exception_handler(RequestDataTooBig)
    def too_big(request, exc):
        return respond(request, 413, "too_large", "The request body is too large: API bodies are small JSON objects.")
