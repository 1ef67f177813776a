"""Who may open what: every project route × every role (and anonymous).

The list of routes is generated from the URL conf, so a new route without an entry in EXPECTED
fails `test_every_route_has_an_expectation` instead of slipping through unchecked.
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from core.roles import Role

ROLES = ["anonymous", "publisher", "operations", "security", "superuser"]
LOGIN = "login"  # a 302 to the login page
OK_OR_DOWN = "200|503"  # /healthz answers 503 while a dependency is down; never a redirect

# url name -> expected answer per role, in ROLES order
EXPECTED: dict[str, tuple] = {
    "home": (LOGIN, 302, 302, 302, 302),
    "healthz": (OK_OR_DOWN,) * 5,
    "login": (200, 302, 302, 302, 302),
    "logout": (405,) * 5,  # GET; logging out takes a POST with a CSRF token
    "studio:home": (LOGIN, 200, 403, 403, 200),
    "studio:upload": (LOGIN, 200, 403, 403, 200),
    # The upload API takes POSTs only; a GET shows the permission check runs first.
    "studio:upload_start": (LOGIN, 405, 403, 403, 405),
    "studio:upload_parts": (LOGIN, 405, 403, 403, 405),
    "studio:upload_complete": (LOGIN, 405, 403, 403, 405),
    "studio:upload_abort": (LOGIN, 405, 403, 403, 405),
    # The sample asset is the publisher's own; operations staff may open any asset.
    "studio:asset": (LOGIN, 200, 200, 403, 200),
    "studio:asset_player": (LOGIN, 200, 200, 403, 200),
    "studio:asset_quality": (LOGIN, 200, 200, 403, 200),
    "studio:hls": (LOGIN, 200, 200, 403, 200),
    # The sample job is published: no preview (tests/pipeline/test_preview.py plays one).
    "studio:preview": (LOGIN, 404, 404, 403, 404),
    "studio:download": (LOGIN, 302, 302, 403, 302),
    "studio:lineage": (LOGIN, 200, 200, 403, 200),  # the sample job's package artifact
    "console:home": (LOGIN, 403, 200, 403, 200),
    "console:jobs": (LOGIN, 403, 200, 403, 200),
    "console:job": (LOGIN, 403, 200, 403, 200),  # the sample job
    "console:workers": (LOGIN, 403, 200, 403, 200),
    "console:events": (LOGIN, 403, 200, 403, 200),
    # Console actions take CSRF-protected POSTs only: a GET shows the permission check runs first.
    "console:jobs_bulk": (LOGIN, 403, 405, 403, 405),
    "console:job_action": (LOGIN, 403, 405, 403, 405),
    "console:failed_requeue": (LOGIN, 403, 405, 403, 405),
    "console:job_review": (LOGIN, 403, 405, 403, 405),
    "console:rule_edit": (LOGIN, 403, 405, 403, 405),
    "console:publisher_verify": (LOGIN, 403, 405, 403, 405),
    "console:rules": (LOGIN, 403, 200, 403, 200),
    "console:rule_set": (LOGIN, 403, 200, 403, 200),  # the sample rule set
    "backups:home": (LOGIN, 403, 200, 403, 200),
    "backups:runs": (LOGIN, 403, 200, 403, 200),
    "backups:runs_csv": (LOGIN, 403, 200, 403, 200),
    "backups:runs_json": (LOGIN, 403, 200, 403, 200),
    "backups:restore_new": (LOGIN, 403, 200, 403, 200),
    # Backups ids are 0 here (no such row): operations staff get 404, POST-only routes 405.
    "backups:run_detail": (LOGIN, 403, 404, 403, 404),
    "backups:run_json": (LOGIN, 403, 404, 403, 404),
    "backups:run_failures_csv": (LOGIN, 403, 404, 403, 404),
    "backups:restore_detail": (LOGIN, 403, 404, 403, 404),
    "backups:policy_detail": (LOGIN, 403, 404, 403, 404),
    "backups:run_start": (LOGIN, 403, 405, 403, 405),
    "backups:failure_retry": (LOGIN, 403, 405, 403, 405),
    "backups:legal_hold": (LOGIN, 403, 405, 403, 405),
    "backups:s3_events": (405,) * 5,  # machines POST here with a bearer token
    "security:home": (LOGIN, 403, 403, 200, 200),
    "security:violations": (LOGIN, 403, 403, 200, 200),
    "security:violations_csv": (LOGIN, 403, 403, 200, 200),
    "security:violations_json": (LOGIN, 403, 403, 200, 200),
    "security:inventory": (LOGIN, 403, 403, 200, 200),
    "security:policies": (LOGIN, 403, 403, 200, 200),
    # Security ids are 0 here (no such row): reviewers get 404, POST-only routes 405.
    "security:violation": (LOGIN, 403, 403, 404, 404),
    "security:alert": (LOGIN, 403, 403, 404, 404),
    "security:violation_acknowledge": (LOGIN, 403, 403, 405, 405),
    "security:violation_assign": (LOGIN, 403, 403, 405, 405),
    "security:violation_resolve": (LOGIN, 403, 403, 405, 405),
    "security:alert_acknowledge": (LOGIN, 403, 403, 405, 405),
    "security:alert_resolve": (LOGIN, 403, 403, 405, 405),
    "security:response_undo": (LOGIN, 403, 403, 405, 405),
    "security:ec2_events": (405,) * 5,  # machines POST here with a bearer token
    "events:s3": (405,) * 5,  # the storage-event webhook: machines POST with a bearer token
    # Webhooks: the sample endpoint and delivery are the publisher's own; a superuser is not
    # their owner (404 on the publisher's pages) but sees them on the operations pages.
    "webhooks:endpoints": (LOGIN, 200, 403, 403, 200),
    "webhooks:endpoint_new": (LOGIN, 200, 403, 403, 200),
    "webhooks:endpoint": (LOGIN, 200, 403, 403, 404),
    "webhooks:endpoint_edit": (LOGIN, 200, 403, 403, 404),
    "webhooks:endpoint_delete": (LOGIN, 200, 403, 403, 404),  # GET asks to confirm; POST deletes
    "webhooks:delivery": (LOGIN, 200, 403, 403, 404),
    "webhooks:endpoint_rotate": (LOGIN, 405, 403, 403, 405),
    "webhooks:endpoint_disable": (LOGIN, 405, 403, 403, 405),
    "webhooks:endpoint_enable": (LOGIN, 405, 403, 403, 405),
    "webhooks:endpoint_ping": (LOGIN, 405, 403, 403, 405),
    "webhooks:delivery_redeliver": (LOGIN, 405, 403, 403, 405),
    "webhooks_ops:endpoints": (LOGIN, 403, 200, 403, 200),
    "webhooks_ops:endpoint": (LOGIN, 403, 200, 403, 200),
    "webhooks_ops:deliveries": (LOGIN, 403, 200, 403, 200),
    "webhooks_ops:delivery": (LOGIN, 403, 200, 403, 200),
    "webhooks_ops:delivery_redeliver": (LOGIN, 403, 405, 403, 405),
    # Prometheus scrapes with a bearer token: 401 (with the scheme) rather than a login page.
    "ops:metrics": (401, 403, 200, 403, 200),
    "notifications:home": (LOGIN, 403, 200, 403, 200),
    # Channel and route changes take CSRF-protected POSTs only (ids 0: no such row).
    "notifications:channel_add": (LOGIN, 403, 405, 403, 405),
    "notifications:channel_test": (LOGIN, 403, 405, 403, 405),
    "notifications:channel_delete": (LOGIN, 403, 405, 403, 405),
    "notifications:route_add": (LOGIN, 403, 405, 403, 405),
    "notifications:route_delete": (LOGIN, 403, 405, 403, 405),
    # API v1 takes API tokens only, never a session: every role's browser gets 401 (or 405 on
    # POST-only routes, which are refused before authentication). Its schema and docs are public.
    "api-v1:openapi-json": (200,) * 5,
    "api-v1:openapi-view": (200,) * 5,
    "api-v1:api-root": (404,) * 5,
    "api-v1:token_get": (401,) * 5,
    "api-v1:assets_list": (401,) * 5,
    "api-v1:asset_get": (401,) * 5,
    "api-v1:asset_update": (401,) * 5,
    "api-v1:asset_delete": (401,) * 5,
    "api-v1:asset_takedown": (405,) * 5,
    "api-v1:asset_takedown_lift": (405,) * 5,
    "api-v1:asset_renditions": (401,) * 5,
    "api-v1:asset_jobs": (401,) * 5,
    "api-v1:asset_playback": (401,) * 5,
    "api-v1:job_get": (401,) * 5,
    "api-v1:job_units": (401,) * 5,
    "api-v1:upload_start": (405,) * 5,
    "api-v1:upload_get": (401,) * 5,
    "api-v1:upload_parts": (405,) * 5,
    "api-v1:upload_complete": (405,) * 5,
    "api-v1:upload_abort": (405,) * 5,
    "api-v1:import_start": (405,) * 5,
    "api-v1:import_get": (401,) * 5,
    "api-v1:webhooks_list": (401,) * 5,
    "api-v1:webhook_create": (401,) * 5,
    "api-v1:webhook_delete": (405,) * 5,
    # The asset page's delivery card posts here (operations staff may take down any asset).
    "delivery_pages:policy": (LOGIN, 405, 405, 403, 405),
    "delivery_pages:takedown": (LOGIN, 405, 405, 403, 405),
    "delivery_pages:delete": (LOGIN, 405, 405, 403, 405),
    "api_tokens:home": (LOGIN, 200, 403, 403, 200),
    "api_tokens:token_new": (LOGIN, 405, 403, 403, 405),
    "api_tokens:token_revoke": (LOGIN, 405, 403, 403, 405),
    "api_tokens:embed_origins": (LOGIN, 405, 403, 403, 405),
    # Playback needs no session: the sample asset is public, so anyone plays and embeds it.
    "delivery:play": (200,) * 5,
    "delivery:embed": (200,) * 5,
    "delivery:oembed": (404,) * 5,  # no url= given
    "delivery:download": (404,) * 5,  # the sample asset offers no download
    "admin:index": (302, 302, 302, 302, 200),
    "django_rq:home": (302, 302, 302, 302, 200),
}

# Third-party namespaces whose own routes are guarded by their index's decorator.
THIRD_PARTY_PREFIXES = ("admin:", "django_rq:")
THIRD_PARTY_MODULES = ("django.contrib.admin", "django_rq")


def project_routes(patterns=None, namespace: str = "") -> list[str]:
    names = []
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            module = getattr(entry.urlconf_module, "__name__", "") or ""
            if module.startswith(THIRD_PARTY_MODULES) or entry.namespace == "admin":
                continue
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            names += project_routes(entry.url_patterns, ns)
        elif isinstance(entry, URLPattern) and entry.name:
            names.append(f"{namespace}{entry.name}")
    return names


def test_every_route_has_an_expectation():
    missing = [name for name in project_routes() if name not in EXPECTED]
    assert missing == [], f"add these routes to EXPECTED with the answer each role gets: {missing}"


@pytest.fixture
def clients(make_user, client, django_user_model):
    from django.test import Client

    made = {"anonymous": client}
    for role_name, role in [("publisher", Role.PUBLISHER), ("operations", Role.OPERATIONS), ("security", Role.SECURITY)]:
        c = Client()
        c.force_login(make_user(role_name, role=role))
        made[role_name] = c
    su = Client()
    su.force_login(django_user_model.objects.create_superuser("root", "root@example.com", "pw"))
    made["superuser"] = su
    return made


def route_params(url_name: str) -> list[str]:
    """The names of the arguments a route's pattern takes, read from the URL conf."""
    resolver = get_resolver()
    *namespaces, name = url_name.split(":")
    for namespace in namespaces:
        resolver = resolver.namespace_dict[namespace][1]
    return resolver.reverse_dict.getlist(name)[0][0][0][1]


@pytest.fixture
def webhook_kwargs(clients):
    """The publisher's own webhook endpoint and one delivery to it."""
    from django.contrib.auth import get_user_model

    from core.services import event_record
    from webhooks.models import Delivery
    from webhooks.services import endpoint_create

    publisher = get_user_model().objects.get(username="publisher")
    endpoint, _ = endpoint_create(owner=publisher, url="http://127.0.0.1:9/hook")
    event = event_record(type="job.published", subject=("pipeline.encodejob", 1), owner=publisher)
    return {"endpoint_id": endpoint.pk, "delivery_id": Delivery.objects.get(event=event).pk}


@pytest.fixture
def sample_kwargs(clients, s3):
    """An argument for every route parameter: the publisher's own published asset (with a
    master playlist in S3), any upload session id, a playlist path, a download."""
    import uuid

    from django.conf import settings
    from django.contrib.auth import get_user_model

    from pipeline.ladders import ladders_sync
    from pipeline.models import (
        Artifact,
        Asset,
        AudioRenditionSpec,
        EncodeJob,
        JobState,
        Profile,
        Rule,
        RuleKind,
        RuleSet,
        VideoRenditionSpec,
    )

    ladders_sync(Profile, VideoRenditionSpec, AudioRenditionSpec)
    publisher = get_user_model().objects.get(username="publisher")
    asset = Asset.objects.create(publisher=publisher, title="Sample", source_bucket=settings.S3_BUCKET_INGEST,
                                 source_key="uploads/publisher/sample.mp4", state="ready")
    key = f"assets/{asset.pk}/package/master.m3u8"
    job = EncodeJob.objects.create(asset=asset, profile=Profile.objects.get(slug="fast"), chunk_seconds=4, segment_seconds=2,
                             state=JobState.PUBLISHED, master_playlist_key=key)
    s3.put_object(Bucket=settings.S3_BUCKET_MEDIA, Key=key, Body=b"#EXTM3U\n#EXT-X-VERSION:7\n")
    artifact = Artifact.objects.create(job=job, kind=Artifact.Kind.PACKAGE, bucket=settings.S3_BUCKET_MEDIA, key=key,
                                       step="package", inputs={"ffmpeg": "5.1"})
    from delivery.models import AssetDelivery

    delivery = AssetDelivery.objects.create(asset=asset, policy="public")
    rule_set = RuleSet.objects.create(name="Sample rules")
    Rule.objects.create(rule_set=rule_set, kind=RuleKind.RENDITIONS_VALID)
    return {"asset_id": asset.pk, "job_id": job.pk, "session_id": uuid.uuid4(), "path": "master.m3u8", "what": "source",
            "artifact_id": artifact.pk, "rule_set_id": rule_set.pk, "rule_id": rule_set.rules.first().pk, "user_id": publisher.pk,
            "playback_id": delivery.playback_id, "token": "public", "name": "master.m3u8", "upload_id": str(uuid.uuid4()),
            "token_id": 0, "import_id": 0, "rung": "h264-360p",
            "violation_id": 0, "alert_id": 0, "response_id": 0, "run_id": 0, "failure_id": 0, "restore_id": 0,
            "policy_id": 0}


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", sorted(EXPECTED))
def test_route_answers_each_role_as_expected(url_name, clients, sample_kwargs, webhook_kwargs, s3, redis_conn):
    arguments = {**sample_kwargs, **webhook_kwargs, "channel_id": 0, "route_id": 0}  # notifications: no such row
    url = reverse(url_name, kwargs={param: arguments[param] for param in route_params(url_name)})
    for role, expected in zip(ROLES, EXPECTED[url_name], strict=True):
        response = clients[role].get(url)
        if expected == LOGIN:
            assert response.status_code == 302, (url_name, role, response.status_code)
            assert response["Location"].startswith(reverse("login")), (url_name, role)
        elif expected == OK_OR_DOWN:
            assert response.status_code in (200, 503), (url_name, role, response.status_code)
        else:
            assert response.status_code == expected, (url_name, role, response.status_code)


@pytest.mark.django_db
def test_each_role_lands_on_its_own_home(clients):
    assert clients["publisher"].get("/")["Location"] == reverse("studio:home")
    assert clients["operations"].get("/")["Location"] == reverse("console:home")
    assert clients["security"].get("/")["Location"] == reverse("security:home")


@pytest.mark.django_db
def test_user_without_role_is_told_so(make_user, client):
    client.force_login(make_user("nobody", role=None))
    response = client.get("/")
    assert response.status_code == 403
    assert b"no Reelflow role" in response.content


@pytest.mark.django_db
def test_login_page_logs_in_and_logout_needs_post(make_user, client):
    make_user("pat", role=Role.PUBLISHER)
    response = client.post(reverse("login"), {"username": "pat", "password": "pw"})
    assert response.status_code == 302 and response["Location"] == reverse("home")
    assert client.get(reverse("studio:home")).status_code == 200
    assert client.post(reverse("logout")).status_code == 302
    assert client.get(reverse("studio:home")).status_code == 302


@pytest.mark.django_db
def test_wrong_password_shows_an_error(make_user, client):
    make_user("pat", role=Role.PUBLISHER)
    response = client.post(reverse("login"), {"username": "pat", "password": "nope"})
    assert response.status_code == 200
    assert b"didn&#x27;t match" in response.content or b"didn't match" in response.content
