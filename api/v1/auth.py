"""Bearer API tokens, the per-token rate limit and the write scope."""

from django.http import HttpRequest
from ninja.security import HttpBearer

from api import services
from api.models import ApiToken
from api.v1.errors import ApiError


class TokenAuth(HttpBearer):
    openapi_description = "An API token from Studio → API tokens or `manage.py apikey create USERNAME`."

    def authenticate(self, request: HttpRequest, token: str) -> ApiToken | None:
        found = services.token_authenticate(token)
        if found is None:
            return None
        rate = services.rate_take(found)
        request.api_rate = rate
        if not rate.allowed:
            raise ApiError(
                429, "rate_limited",
                f"More than {rate.limit} requests this minute with this token: wait {rate.reset_in} s.",
                headers={"Retry-After": str(rate.reset_in)},
            )  # fmt: skip
        request.user = found.publisher
        return found


def publisher(request: HttpRequest):
    return request.auth.publisher


def write_required(request: HttpRequest) -> None:
    if not request.auth.can_write:
        raise ApiError(403, "read_only_token", "This token is read-only: create a token with the write scope.")
