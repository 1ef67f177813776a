"""ASGI entry point: Django over HTTP, Channels consumers over websockets.

Websockets go through the session auth stack and an origin check, so a page on another site
cannot open a socket with a signed-in user's cookies.
"""

import os
import threading

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from config.routing import websocket_urlpatterns  # noqa: E402


def _warm_up() -> None:
    from django.conf import settings

    if settings.SECURITY_EVENTS_TOKEN:  # the EC2 webhook is on: its first event stops at once
        from security import aws

        aws.clients_warm_up()


threading.Thread(target=_warm_up, name="warm-up", daemon=True).start()

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
