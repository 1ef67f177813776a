"""Authentication that refuses logins while an account or the client's address is blocked.

Only `authenticate` checks blocks; sessions already open are left alone, so signed-in pages pay
no extra query (suspension, which must end sessions, uses is_active instead).
"""

from django.contrib.auth.backends import ModelBackend

from security.selectors import client_address
from security.services.detectors import login_block_active


class LockoutModelBackend(ModelBackend):
    def authenticate(self, request, username=None, password=None, **kwargs):
        address = client_address(request) if request is not None else None
        if address and login_block_active(key=f"address:{address}") is not None:
            return None
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None and login_block_active(key=f"user:{user.pk}") is not None:
            return None
        return user
