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
    "console:home": (LOGIN, 403, 200, 403, 200),
    "backups:home": (LOGIN, 403, 200, 403, 200),
    "security:home": (LOGIN, 403, 403, 200, 200),
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


@pytest.mark.django_db
@pytest.mark.parametrize("url_name", sorted(EXPECTED))
def test_route_answers_each_role_as_expected(url_name, clients, s3, redis_conn):
    url = reverse(url_name)
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
