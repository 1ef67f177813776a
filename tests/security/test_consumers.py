"""New alerts appear live on the security pages: a websocket for security reviewers only."""

import pytest
from asgiref.sync import async_to_sync
from channels.auth import AuthMiddlewareStack
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
from django.contrib.sessions.backends.db import SessionStore
from django.db import transaction

from core.models import AlertSeverity
from core.roles import Role
from security.routing import websocket_urlpatterns
from security.services.alerts import security_alert_raise

# Transactional: the consumer reads through its own thread, which must see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)

APP = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))


def session_cookie(user) -> str:
    store = SessionStore()
    store[SESSION_KEY] = str(user.pk)
    store[BACKEND_SESSION_KEY] = settings.AUTHENTICATION_BACKENDS[0]
    store[HASH_SESSION_KEY] = user.get_session_auth_hash()
    store.save()
    return f"{settings.SESSION_COOKIE_NAME}={store.session_key}"


async def connect(cookie: str | None):
    headers = [(b"cookie", cookie.encode())] if cookie else []
    communicator = WebsocketCommunicator(APP, "/ws/security/alerts/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    return communicator, connected


def test_live_alerts_need_a_security_reviewer(make_user, redis_conn):
    publisher_cookie = session_cookie(make_user("pub", role=Role.PUBLISHER))

    async def scenario():
        for cookie in (None, publisher_cookie):
            communicator, connected = await connect(cookie)
            assert not connected
            await communicator.disconnect()

    async_to_sync(scenario)()


def test_new_alert_is_pushed_to_open_pages(make_user, redis_conn):
    cookie = session_cookie(make_user("sec", role=Role.SECURITY))

    def raise_alert():
        with transaction.atomic():
            return security_alert_raise(
                severity=AlertSeverity.CRITICAL, title="worker-not-debug on w-9", dedup_key="t:1"
            )

    async def scenario():
        communicator, connected = await connect(cookie)
        assert connected
        snapshot = await communicator.receive_json_from(timeout=5)
        assert snapshot == {"type": "snapshot", "alerts": []}
        alert = await database_sync_to_async(raise_alert)()
        pushed = await communicator.receive_json_from(timeout=5)
        assert pushed["type"] == "alert" and pushed["alert"]["id"] == alert.pk
        assert (
            pushed["alert"]["title"] == "worker-not-debug on w-9"
            and pushed["alert"]["severity"] == "critical"
        )
        await communicator.disconnect()

    async_to_sync(scenario)()
