"""Hostile users: sockets opened by the wrong people, forged cross-site POSTs, guessed ids,
tampered and expired presigned URLs, forged machine calls, password guessing.

The websocket matrix and the CSRF sweep are generated from the routing and the URL conf, so
a route added later is checked (or fails `..._has_an_expectation`) without anyone remembering.
"""

import time
import urllib.parse
import uuid

import pytest
import requests
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from core import s3 as s3_module
from core.roles import Role
from pipeline.models import Asset, EncodeJob, JobState, Profile

ORIGIN = b"http://127.0.0.1:8000"
OPEN = "open"
WS_ROLES = ["anonymous", "publisher", "other_publisher", "operations", "security", "superuser"]

# websocket route (as written in config/routing.py) -> what each role in WS_ROLES gets:
# OPEN (accepted, first frame is data) or the close code. The sample asset and job belong to
# "publisher"; backup ids are 0 (no such run): operations staff get 4404, others 4403.
WS_EXPECTED: dict[str, tuple] = {
    "ws/studio/assets/<int:asset_id>/": (4403, OPEN, 4404, OPEN, 4403, OPEN),
    "ws/backups/<str:kind>/<int:pk>/": (4403, 4403, 4403, 4404, 4403, 4404),
    "ws/security/alerts/": (4403, 4403, 4403, 4403, OPEN, OPEN),
    "ws/ops/jobs/": (4403, 4403, 4403, OPEN, 4403, OPEN),
    "ws/ops/jobs/<int:job_id>/": (4403, 4403, 4403, OPEN, 4403, OPEN),
}


def websocket_routes(patterns=None, prefix: str = "") -> list[str]:
    from config.routing import websocket_urlpatterns

    routes = []
    for entry in websocket_urlpatterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            routes += websocket_routes(entry.url_patterns, prefix + str(entry.pattern))
        else:
            routes.append(prefix + str(entry.pattern))
    return routes


def test_every_websocket_route_has_an_expectation():
    missing = [route for route in websocket_routes() if route not in WS_EXPECTED]
    assert missing == [], f"add these websocket routes to WS_EXPECTED with what each role gets: {missing}"
    stale = [route for route in WS_EXPECTED if route not in websocket_routes()]
    assert stale == [], f"WS_EXPECTED names routes that no longer exist: {stale}"


def cookie_for(user) -> bytes:
    client = Client()
    client.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


@pytest.fixture
def people(transactional_db, make_user, django_user_model):
    from pipeline.ladders import ladders_sync
    from pipeline.models import AudioRenditionSpec, VideoRenditionSpec

    ladders_sync(Profile, VideoRenditionSpec, AudioRenditionSpec)
    made = {
        "publisher": make_user("alice", role=Role.PUBLISHER),
        "other_publisher": make_user("mallory", role=Role.PUBLISHER),
        "operations": make_user("olive", role=Role.OPERATIONS),
        "security": make_user("sec", role=Role.SECURITY),
        "superuser": django_user_model.objects.create_superuser("root", "root@example.com", "pw"),
    }
    return made


@pytest.fixture
def published(people, s3):
    """alice's published asset, its master playlist in S3."""
    asset = Asset.objects.create(
        publisher=people["publisher"],
        title="Alice's",
        source_bucket=settings.S3_BUCKET_INGEST,
        source_key="uploads/alice/x/alice.mp4",
        state="ready",
    )
    key = f"assets/{asset.pk}/package/master.m3u8"
    job = EncodeJob.objects.create(
        asset=asset,
        profile=Profile.objects.get(slug="fast"),
        chunk_seconds=4,
        segment_seconds=2,
        state=JobState.PUBLISHED,
        master_playlist_key=key,
    )
    s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key, Body=b"#EXTM3U\n#EXT-X-VERSION:7\n")
    s3.put_object(Bucket=settings.S3_BUCKET_INGEST, Key=asset.source_key, Body=b"\x00\x00\x00\x18ftypisom")
    return asset, job


def ws_outcome(path: str, *, cookie: bytes | None, origin: bytes = ORIGIN):
    """OPEN, or the close code the socket got (refused at the handshake or right after)."""
    from config.asgi import application

    async def scenario():
        headers = [(b"origin", origin)] + ([(b"cookie", cookie)] if cookie else [])
        comm = WebsocketCommunicator(application, path, headers=headers)
        connected, code = await comm.connect(timeout=10)
        if not connected:
            return code or "refused"
        message = await comm.receive_output(timeout=10)
        if message["type"] == "websocket.close":
            await comm.wait()
            return message["code"]
        await comm.disconnect()
        return OPEN

    return async_to_sync(scenario)()


def ws_path(route: str, values: dict) -> str:
    path = route
    for name, value in values.items():
        for converter in ("int", "str", "slug", "uuid", "path"):
            path = path.replace(f"<{converter}:{name}>", str(value))
    assert "<" not in path, f"no sample value for a parameter of {route}"
    return "/" + path


def test_websocket_routes_answer_each_role_as_expected(people, published, redis_conn):
    asset, job = published
    values = {"asset_id": asset.pk, "job_id": job.pk, "kind": "run", "pk": 0}
    cookies = {role: None if role == "anonymous" else cookie_for(people[role]) for role in WS_ROLES}
    wrong = []
    for route in websocket_routes():
        path = ws_path(route, values)
        for role, expected in zip(WS_ROLES, WS_EXPECTED[route], strict=True):
            got = ws_outcome(path, cookie=cookies[role])
            if got != expected:
                wrong.append(f"{path} as {role}: expected {expected}, got {got}")
        # A page on another site cannot open any socket with a signed-in superuser's cookie.
        got = ws_outcome(path, cookie=cookies["superuser"], origin=b"https://evil.example")
        if got == OPEN:
            wrong.append(f"{path}: opened from a foreign origin")
    assert wrong == [], "\n".join(wrong)


# --- CSRF -----------------------------------------------------------------------------------

# Machine endpoints: no browser session, authenticated by a bearer token instead of CSRF.
TOKEN_ENDPOINTS = {"events:s3", "backups:s3_events", "security:ec2_events"}
SAMPLE_BY_CONVERTER = {"IntConverter": 1, "UUIDConverter": uuid.uuid4(), "StringConverter": "x",
                       "SlugConverter": "x", "PathConverter": "x/y"}  # fmt: skip


def all_routes(patterns=None, namespace: str = "") -> list[tuple[str, object]]:
    """(url name, view) for every named route of the URL conf, third-party ones included."""
    found = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += all_routes(entry.url_patterns, ns)
        elif isinstance(entry, URLPattern) and entry.name:
            found.append((f"{namespace}{entry.name}", entry.callback))
    return found


def sample_url(name: str) -> str | None:
    """The route's URL with a sample value per parameter, chosen by its converter."""
    resolver = get_resolver()
    *namespaces, short = name.split(":")
    for ns in namespaces:
        resolver = resolver.namespace_dict[ns][1]
    possibilities = resolver.reverse_dict.getlist(short)
    if not possibilities:
        return None
    _, _, _, converters = possibilities[0]
    params = possibilities[0][0][0][1]
    kwargs = {p: SAMPLE_BY_CONVERTER.get(type(converters.get(p)).__name__, "1") for p in params}
    try:
        return reverse(name, kwargs=kwargs)
    except Exception:  # a regex route with its own pattern: not worth guessing
        return None


def api_routes() -> set[str]:
    """API v1 (docs/api.md): API tokens only, never a session, so a forged cross-site POST
    carrying the victim's cookie is simply unauthenticated (401), CSRF or not."""
    return {name for name, _ in all_routes() if name.startswith("api-v1:")}


def test_only_token_authenticated_machine_endpoints_are_csrf_exempt():
    exempt = {name for name, view in all_routes() if getattr(view, "csrf_exempt", False)}
    assert exempt - api_routes() == TOKEN_ENDPOINTS, (
        f"csrf_exempt views that are not token endpoints: {exempt - TOKEN_ENDPOINTS - api_routes()}"
    )


def test_the_api_acts_on_no_session(people):
    """Signed in as a superuser, with no API token: every API write is 401 (or 405)."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["superuser"])
    answered = {}
    for name in api_routes():
        url = sample_url(name)
        if url is None or name.endswith(("openapi-json", "openapi-view", "api-root")):
            continue
        for method in ("post", "patch", "delete"):
            answered[(name, method)] = getattr(client, method)(url, "{}", content_type="application/json").status_code
    assert answered and set(answered.values()) <= {401, 405}, answered


def test_every_route_refuses_a_post_without_a_csrf_token(people):
    """A forged form post from another site carries the victim's cookie and no token."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(people["superuser"])  # may reach every view: only CSRF may stop it
    checked, wrong = 0, []
    for name, _ in all_routes():
        url = sample_url(name)
        if url is None or name in TOKEN_ENDPOINTS or name in api_routes():
            continue
        response = client.post(url, {"anything": "1"})
        checked += 1
        if response.status_code != 403 or b"CSRF" not in response.content:
            wrong.append(f"{name} {url}: {response.status_code}")
    assert checked >= 40
    assert wrong == [], "accepted a POST without a CSRF token:\n" + "\n".join(wrong)


def test_a_post_with_the_token_gets_through(people):
    """The control: the same client with a valid token is not stopped by CSRF."""
    client = Client(enforce_csrf_checks=True)
    client.get(reverse("login"))
    token = client.cookies[settings.CSRF_COOKIE_NAME].value
    response = client.post(
        reverse("login"), {"username": "alice", "password": "pw", "csrfmiddlewaretoken": token}
    )
    assert response.status_code == 302 and response["Location"] == reverse("home")


@pytest.mark.parametrize("name", sorted(TOKEN_ENDPOINTS))
def test_machine_endpoints_refuse_missing_and_wrong_tokens(name, people, s3):
    client = Client(enforce_csrf_checks=True)
    url = reverse(name)
    body = '{"Records": []}'
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong-token"}, {"HTTP_AUTHORIZATION": "Basic YTpi"}):
        response = client.post(url, body, content_type="application/json", **headers)
        assert response.status_code in (401, 403), (name, headers, response.status_code)


# --- Guessing ids (IDOR) -------------------------------------------------------------------


def test_another_publisher_guessing_ids_sees_only_not_found(people, published, s3, redis_conn):
    asset, job = published
    owner, mallory = Client(), Client()
    owner.force_login(people["publisher"])
    mallory.force_login(people["other_publisher"])
    session = owner.post(
        reverse("studio:upload_start"),
        {"filename": "secret.mp4", "size": 6 * 1024 * 1024, "lastModified": 1, "fingerprint": "f" * 64,
         "contentType": "video/mp4", "title": "", "profile": "fast",
         "head": "AAAAGGZ0eXBpc29tAAACAGlzb21pc28y"},
        content_type="application/json",
    )  # fmt: skip
    assert session.status_code == 201, session.content
    session_id = session.json()["id"]
    gets = [
        reverse("studio:asset", kwargs={"asset_id": asset.pk}),
        reverse("studio:asset_player", kwargs={"asset_id": asset.pk}),
        reverse("studio:asset_quality", kwargs={"asset_id": asset.pk}),
        reverse("studio:hls", kwargs={"asset_id": asset.pk, "path": "master.m3u8"}),
        reverse("studio:download", kwargs={"asset_id": asset.pk, "what": "source"}),
    ]
    posts = [
        reverse(f"studio:upload_{step}", kwargs={"session_id": session_id})
        for step in ("parts", "complete", "abort")
    ]
    for url in gets:
        assert owner.get(url).status_code in (200, 302), url
        stolen = mallory.get(url)
        missing = mallory.get(url.replace(f"/assets/{asset.pk}/", "/assets/999999/"))
        assert stolen.status_code == missing.status_code == 404, (
            url,
            stolen.status_code,
            missing.status_code,
        )
        assert "Location" not in stolen, "no presigned URL leaks to another publisher"
    for url in posts:
        stolen = mallory.post(url, {"parts": [1]}, content_type="application/json")
        missing = mallory.post(
            url.replace(session_id, str(uuid.uuid4())), {"parts": [1]}, content_type="application/json"
        )
        assert stolen.status_code == missing.status_code == 404, (
            url,
            stolen.status_code,
            missing.status_code,
        )
    # Neighbouring ids are no better than the real one.
    for guess in range(max(1, asset.pk - 2), asset.pk + 3):
        assert mallory.get(reverse("studio:asset", kwargs={"asset_id": guess})).status_code == 404
    # And the owner's session still works: mallory's attempts changed nothing.
    signed = owner.post(posts[0], {"parts": [1]}, content_type="application/json")
    assert signed.status_code == 200, signed.content


# --- Presigned URLs --------------------------------------------------------------------------


def _swap_key(url: str, old_key: str, new_key: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(
        parsed._replace(path=parsed.path.replace(urllib.parse.quote(old_key), new_key))
    )


def test_presigned_urls_are_scoped_to_their_key_and_expire(s3):
    bucket = settings.S3_BUCKET_MEDIA
    mine, other = f"hardening/{uuid.uuid4().hex}/mine.txt", f"hardening/{uuid.uuid4().hex}/other.txt"
    s3.put_object(Bucket=bucket, Key=mine, Body=b"mine")
    s3.put_object(Bucket=bucket, Key=other, Body=b"other")

    url = s3_module.presign_get(bucket, mine, expires=60)
    assert requests.get(url, timeout=10).content == b"mine"
    tampered = _swap_key(url, mine, other)
    assert tampered != url
    assert requests.get(tampered, timeout=10).status_code == 403, "a URL signed for one key opened another"
    # The signature also covers the method: a GET URL cannot overwrite the object.
    assert requests.put(url, data=b"overwritten", timeout=10).status_code == 403
    assert s3.get_object(Bucket=bucket, Key=mine)["Body"].read() == b"mine"
    # Stretching the lifetime in the query breaks the signature.
    longer = url.replace("X-Amz-Expires=60", "X-Amz-Expires=604800")
    assert requests.get(longer, timeout=10).status_code == 403

    short = s3_module.presign_get(bucket, mine, expires=1)
    assert requests.get(short, timeout=10).status_code == 200
    time.sleep(2.5)
    assert requests.get(short, timeout=10).status_code == 403, "an expired presigned URL still works"


def test_an_upload_part_url_writes_only_its_own_part(s3):
    bucket = settings.S3_BUCKET_INGEST
    key = f"uploads/hardening/{uuid.uuid4().hex}/part.mp4"
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    try:
        url = s3_module.presign_upload_part(bucket, key, upload_id=upload_id, part_number=1, expires=60)
        other_part = url.replace("partNumber=1", "partNumber=2")
        assert requests.put(other_part, data=b"x" * 1024, timeout=10).status_code == 403
        other_key = _swap_key(url, key, key.replace("part.mp4", "elsewhere.mp4"))
        assert requests.put(other_key, data=b"x" * 1024, timeout=10).status_code == 403
        assert requests.put(url, data=b"x" * 1024, timeout=10).status_code == 200
        parts = s3.list_parts(Bucket=bucket, Key=key, UploadId=upload_id).get("Parts", [])
        assert [p["PartNumber"] for p in parts] == [1]
    finally:
        s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)


# --- Password guessing ---------------------------------------------------------------------


def login(client: Client, username: str, password: str, address: str = "203.0.113.7", **headers):
    return client.post(
        reverse("login"), {"username": username, "password": password}, REMOTE_ADDR=address, **headers
    )


def test_guessing_one_accounts_password_locks_it(people, settings):
    """Five wrong passwords lock the account from the guessing address; from elsewhere its owner
    still signs in (lock by account and address: a guesser cannot lock a reviewer out)."""
    settings.SECURITY_LOGIN_FAILURES_PER_USER = 5
    client = Client()
    for attempt in range(5):
        assert login(client, "alice", f"guess-{attempt}").status_code == 200
    # The right password now fails from the guessing address: the account is locked there.
    assert login(client, "alice", "pw").status_code == 200
    assert "_auth_user_id" not in client.session
    # Its owner, elsewhere, is not locked out; other accounts are untouched (the guessing
    # address itself is slowed down for every account: security/services/logins.py).
    assert login(Client(), "alice", "pw", address="198.51.100.1").status_code == 302
    assert login(Client(), "mallory", "pw", address="192.0.2.10").status_code == 302, "other accounts are untouched"


def test_spraying_many_accounts_from_one_address_blocks_the_address(people, settings):
    settings.SECURITY_LOGIN_FAILURES_PER_ADDRESS = 8
    settings.SECURITY_LOGIN_FAILURES_PER_USER = 100
    client = Client()
    for attempt in range(8):
        login(client, f"user{attempt}", "Password1!")
    blocked = login(Client(), "olive", "pw")
    assert blocked.status_code == 200 and "_auth_user_id" not in blocked.client.session
    # A forged forwarded-for header does not get around it: only the peer address counts.
    spoofed = login(Client(), "olive", "pw", HTTP_X_FORWARDED_FOR="192.0.2.55")
    assert spoofed.status_code == 200
    assert login(Client(), "olive", "pw", address="198.51.100.2").status_code == 302
