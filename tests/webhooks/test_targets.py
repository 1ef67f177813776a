"""SSRF: where webhooks may not go, refused when saved and again when sending."""

import socket

import pytest

from tests.webhooks.test_delivery import publish
from webhooks import sender, services, targets
from webhooks.models import Delivery


@pytest.fixture
def public_only(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = False


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:8000/hook", "127.0.0.1, a loopback address"),
        ("http://localhost/hook", "a loopback address"),
        ("http://[::1]/hook", "::1, a loopback address"),
        ("http://[::ffff:127.0.0.1]/hook", "a loopback address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254, a link-local address"),
        ("https://10.1.2.3/hook", "10.1.2.3, a private address"),
        ("http://192.168.0.10/hook", "a private address"),
        ("http://100.64.0.1/hook", "not a public address"),
        ("http://0.0.0.0/hook", "an unspecified address"),
        ("http://224.0.0.1/hook", "a multicast address"),
        ("ftp://93.184.215.14/hook", "Use an http:// or https:// URL."),
        ("file:///etc/passwd", "Use an http:// or https:// URL."),
        ("http://user:pw@93.184.215.14/hook", "Put no user name or password in the URL"),
        ("http:///hook", "The URL has no host name."),
        ("http://no-such-host.invalid/hook", "does not resolve"),
        ("http://93.184.215.14:99999/hook", "This is not a valid URL"),
    ],
)
def test_non_public_or_malformed_targets_are_refused(public_only, url, reason):
    with pytest.raises(targets.TargetRefused) as refused:
        targets.url_check(url)
    assert reason in str(refused.value)


def test_public_addresses_pass(public_only):
    targets.url_check("https://93.184.215.14/hook")
    targets.url_check("http://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]:8080/hook")


def test_private_targets_pass_when_allowed(settings):
    settings.WEBHOOKS_ALLOW_PRIVATE_TARGETS = True
    targets.url_check("http://127.0.0.1:8000/hook")


@pytest.mark.django_db
def test_form_tells_the_publisher_why_a_url_is_refused(public_only, make_user, client):
    client.force_login(make_user("alice"))
    response = client.post(
        "/studio/webhooks/new/", {"url": "http://169.254.169.254/latest/", "event_types": ["job.*"]}
    )
    assert response.status_code == 200
    assert (
        "169.254.169.254 resolves to 169.254.169.254, a link-local address. Webhooks go to public addresses only."
        in (response.content.decode())
    )
    assert not Delivery.objects.exists()
    with pytest.raises(services.WebhookRefused, match="loopback"):
        services.endpoint_create(owner=make_user("bob"), url="http://127.0.0.1/x")


def test_delivery_time_check_refuses_what_became_private(pub, endpoint_for, receiver, run_default_worker):
    # Saved while private targets were allowed (or while the name resolved elsewhere); the
    # worker runs with the production rule and must not connect.
    server = receiver()
    endpoint, _ = endpoint_for(pub, server.url)
    event = publish(pub)

    run_default_worker(env={"WEBHOOKS_ALLOW_PRIVATE_TARGETS": "false"})

    assert server.requests == []
    attempt = Delivery.objects.get(event=event).attempts.get()
    assert attempt.error.startswith("Refused to connect: 127.0.0.1 resolves to 127.0.0.1, a loopback address")
    assert attempt.status_code is None


def test_dns_rebinding_between_check_and_connect_is_refused(public_only, receiver, monkeypatch):
    # Fault injected: the name resolves to a public address for the first look-up and to
    # 127.0.0.1 afterwards. The connection's own check must refuse, and nothing reaches the server.
    server = receiver()
    port = server.server.server_address[1]
    real_getaddrinfo = socket.getaddrinfo
    answers = iter(["93.184.215.14"])

    def rebinding(host, *args, **kwargs):
        if host == "rebind.example":
            address = next(answers, "127.0.0.1")
            return real_getaddrinfo(address, *args, **kwargs)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    outcome = sender.post(
        url=f"http://rebind.example:{port}/hook", body=b"{}", headers={}, connect_timeout=2, total_timeout=4
    )
    assert not outcome.ok and outcome.status_code is None
    assert outcome.error == (
        "Refused to connect: rebind.example resolves to 127.0.0.1, a loopback address. Webhooks go to public addresses only."
    )
    assert server.requests == []
