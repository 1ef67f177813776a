"""Authentication that refuses an attempt before its password is checked while the account is
locked from the client's address (or on its device), or while the address must still wait
(security.services.logins). A refusal says why on the login page, and is not counted as
another failure.

Only `authenticate` checks; sessions already open are left alone, so signed-in pages pay no
extra query (suspension, which must end sessions, uses is_active instead).
"""

from django.contrib import messages
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied

from security.selectors import client_address
from security.services.logins import DEVICE_COOKIE, device_trusted, login_refusal

REFUSAL = "security_login_refusal"  # request attribute: the receiver does not count a refusal


class LockoutModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is not None and username is not None:
            device = device_trusted(cookie=request.COOKIES.get(DEVICE_COOKIE), username=username)
            request.security_device = device
            refusal = login_refusal(username=username, address=client_address(request), device=device)
            if refusal:
                setattr(request, REFUSAL, refusal)
                if hasattr(request, "_messages"):
                    messages.error(request, refusal)
                raise PermissionDenied(refusal)  # stops Django trying any other backend
        return super().authenticate(request, username=username, password=password, **kwargs)
