"""Every request's log context: a request id (the proxy's X-Request-ID if it is sane, else a
new one, echoed in the response) and the user, for every line logged while it is served."""

import re
import uuid

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.utils.functional import SimpleLazyObject, empty

from core import logs

_SANE_ID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")


def _request_id(request) -> str:
    given = request.headers.get("X-Request-ID", "")
    return given if _SANE_ID.match(given) else uuid.uuid4().hex


class RequestContextMiddleware:
    """First in the stack, so the lines of every later middleware carry the id. The user is
    bound lazily, by the filter reading `request.user` only once authentication has run."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        request_id = _request_id(request)
        with logs.scope(fresh=True, request_id=request_id, user=_LazyUser(request)):
            response = self.get_response(request)
        response["X-Request-ID"] = request_id
        return response

    async def _acall(self, request):
        request_id = _request_id(request)
        with logs.scope(fresh=True, request_id=request_id, user=_LazyUser(request)):
            response = await self.get_response(request)
        response["X-Request-ID"] = request_id
        return response


class _LazyUser:
    """The request's user name once something has loaded the user; empty before. Never loads
    it itself: that is a database query, and a line may be logged from async code."""

    def __init__(self, request) -> None:
        self.request = request

    def __str__(self) -> str:
        user = getattr(self.request, "user", None)
        if isinstance(user, SimpleLazyObject) and user._wrapped is empty:
            return ""
        if user is None or not getattr(user, "is_authenticated", False):
            return ""
        return user.get_username()
