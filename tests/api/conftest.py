"""Fixtures of the API tests: two publishers with tokens, and a client that sends one."""

import json

import pytest

from tests.studio.conftest import alice, alice_client, bob, ladders, make_asset, package_in_s3  # noqa: F401


class TokenClient:
    """The Django test client with `Authorization: Bearer <token>` on every request."""

    def __init__(self, client, token: str) -> None:
        self.client = client
        self.token = token

    def _headers(self, extra: dict | None = None) -> dict:
        return {"Authorization": f"Bearer {self.token}", **(extra or {})}

    def get(self, path: str, data: dict | None = None, **extra):
        return self.client.get(path, data or {}, headers=self._headers(extra.pop("headers", None)), **extra)

    def _send(self, method: str, path: str, body=None, *, raw: bytes | str | None = None, headers=None):
        data = raw if raw is not None else (json.dumps(body) if body is not None else "")
        send = getattr(self.client, method)
        return send(path, data, content_type="application/json", headers=self._headers(headers))

    def post(self, path: str, body=None, **kwargs):
        return self._send("post", path, body, **kwargs)

    def patch(self, path: str, body=None, **kwargs):
        return self._send("patch", path, body, **kwargs)

    def delete(self, path: str, **kwargs):
        return self._send("delete", path, None, **kwargs)


@pytest.fixture
def alice_token(alice):  # noqa: F811 - the fixture imported above
    from api.services import token_create

    return token_create(publisher=alice, name="alice's script", scope="write")[1]


@pytest.fixture
def bob_token(bob):  # noqa: F811 - the fixture imported above
    from api.services import token_create

    return token_create(publisher=bob, name="bob's script", scope="write")[1]


@pytest.fixture
def alice_api(client, alice_token, redis_conn):
    return TokenClient(client, alice_token)


@pytest.fixture
def bob_api(client, bob_token, redis_conn):
    from django.test import Client

    return TokenClient(Client(), bob_token)
