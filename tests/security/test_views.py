"""The violations console: filters, evidence, acknowledge/assign/resolve, exports, alerts with
undo. Pages are for security reviewers only."""

import csv
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from core.models import AlertState, Event
from core.roles import Role
from security.models import Instance, ResourceKind, ResponseAction, ResponseState, Violation, ViolationState
from security.policy import Trigger
from security.services.evaluation import instance_evaluate
from security.services.inventory import instance_upsert

pytestmark = pytest.mark.django_db


def worker_instance(name: str, **config) -> Instance:
    from security.fleet import registration_document

    doc = registration_document(worker_name=name, queues=["default"])
    doc.update(config)
    return instance_upsert(
        kind=ResourceKind.WORKER, external_id=name, config=doc, state="running", name=f"host:{name}"
    )


@pytest.fixture
def violations_made(redis_conn, settings, tmp_path):
    """Two violations on workers (no cloud needed): debug on, and an old version."""
    pack = tmp_path / "alert-only.yml"
    # The shipped pack would shut these (non-existent) workers down; alert-only keeps it simple.
    pack.write_text(
        "policies:\n"
        "  - {name: worker-not-debug, resource: reelflow.worker, severity: critical, filters: [{Debug: true}]}\n"
        "  - {name: worker-fleet-version, resource: reelflow.worker, filters: [{type: value, key: Version, op: ne, value: '{fleet_version}'}]}\n"
    )
    settings.SECURITY_POLICY_PATHS = [str(pack)]
    debug = worker_instance("w-debug", Debug=True)
    old = worker_instance("w-old", Version="0.0.1")
    for instance in (debug, old):
        instance_evaluate(instance_id=instance.pk, trigger=Trigger.SWEEP)
    return Violation.objects.get(instance=debug), Violation.objects.get(instance=old)


@pytest.fixture
def reviewer_client(client, reviewer):
    client.force_login(reviewer)
    return client


def test_list_filters_by_severity_rule_resource_state_and_age(
    reviewer_client, violations_made, django_assert_max_num_queries
):
    debug, old = violations_made
    url = reverse("security:violations")

    def listed(**params) -> set[str]:
        content = reviewer_client.get(url, params).content.decode()
        return {name for name in ("worker-not-debug", "worker-fleet-version") if f">{name}</a>" in content}

    with django_assert_max_num_queries(12):
        assert reviewer_client.get(url).status_code == 200
    assert listed() == {"worker-not-debug", "worker-fleet-version"}
    assert listed(severity="critical") == {"worker-not-debug"}
    assert listed(policy="worker-fleet-version") == {"worker-fleet-version"}
    assert listed(resource="w-debug") == {"worker-not-debug"}
    assert listed(state="resolved") == set()
    Violation.objects.filter(pk=old.pk).update(opened_at=timezone.now() - timedelta(days=10))
    assert listed(age="gt7d") == {"worker-fleet-version"}
    assert listed(age="24h") == {"worker-not-debug"}


def test_detail_shows_evidence_and_what_compliant_looks_like(reviewer_client, violations_made):
    debug, _ = violations_made
    page = reviewer_client.get(reverse("security:violation", args=[debug.pk])).content.decode()
    assert "Debug" in page and "must not equal true" in page and "Audit trail" in page
    assert "violation.opened" in page


def test_acknowledge_assign_resolve_through_the_page(reviewer_client, reviewer, make_user, violations_made):
    debug, _ = violations_made
    base = reverse("security:violation", args=[debug.pk])
    until = (timezone.now() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    answer = reviewer_client.post(base + "acknowledge/", {"justification": "", "expires_at": until})
    assert answer.status_code == 302
    debug.refresh_from_db()
    assert debug.state == ViolationState.OPEN  # refused: no justification
    reviewer_client.post(
        base + "acknowledge/", {"justification": "debug build for a repro", "expires_at": until}
    )
    debug.refresh_from_db()
    assert debug.state == ViolationState.ACKNOWLEDGED and debug.acknowledged_by == reviewer
    assert debug.alert.state == AlertState.ACKNOWLEDGED

    colleague = make_user("colleague", role=Role.SECURITY)
    reviewer_client.post(base + "assign/", {"assignee": colleague.pk})
    debug.refresh_from_db()
    assert debug.assignee == colleague
    publisher = make_user("pub", role=Role.PUBLISHER)
    reviewer_client.post(base + "assign/", {"assignee": publisher.pk})  # not a reviewer: refused
    debug.refresh_from_db()
    assert debug.assignee == colleague

    reviewer_client.post(base + "resolve/", {"note": "turned DEBUG off"})
    debug.refresh_from_db()
    assert debug.state == ViolationState.RESOLVED and debug.alert.state == AlertState.RESOLVED
    trail = list(
        Event.objects.filter(subject_type="security.violation", subject_id=str(debug.pk))
        .order_by("id")
        .values_list("type", "actor_label")
    )
    assert trail == [
        ("violation.opened", "evaluation"),
        ("violation.acknowledged", "reviewer"),
        ("violation.assigned", "reviewer"),
        ("violation.resolved", "reviewer"),
    ]


def test_csv_and_json_exports_follow_the_filters(reviewer_client, violations_made):
    url = reverse("security:violations_csv")
    rows = list(csv.DictReader(io.StringIO(reviewer_client.get(url).content.decode())))
    assert {r["policy"] for r in rows} == {"worker-not-debug", "worker-fleet-version"}
    assert rows[0]["resource_kind"] == "reelflow.worker" and "Debug" in "".join(r["checks"] for r in rows)
    data = reviewer_client.get(reverse("security:violations_json"), {"severity": "critical"}).json()
    assert data["count"] == 1 and data["violations"][0]["policy"] == "worker-not-debug"
    assert data["violations"][0]["compliant"]


def test_alert_page_shows_automatic_actions_and_undo(reviewer_client, reviewer, make_user, settings, client):
    settings.SECURITY_LOGIN_FAILURES_PER_USER = 3
    make_user("pat", role=Role.PUBLISHER)
    from django.test import Client

    attacker = Client()
    for _ in range(3):
        attacker.post(reverse("login"), {"username": "pat", "password": "nope"})
    response = ResponseAction.objects.get()
    home = reviewer_client.get(reverse("security:home")).content.decode()
    assert "Account pat locked after 3 failed logins" in home and f'data-alert-id="{response.alert_id}"' in home
    page = reviewer_client.get(reverse("security:alert", args=[response.alert_id])).content.decode()
    assert "Lock account" in page and "Undo" in page and "Lift the lock" in page
    reviewer_client.post(reverse("security:response_undo", args=[response.pk]))
    response.refresh_from_db()
    assert response.state == ResponseState.UNDONE
    until = (timezone.now() + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    reviewer_client.post(
        reverse("security:alert_acknowledge", args=[response.alert_id]),
        {"justification": "was me", "expires_at": until},
    )
    response.alert.refresh_from_db()
    assert response.alert.state == AlertState.ACKNOWLEDGED and response.alert.justification == "was me"


def test_pages_are_for_security_reviewers_only(client, make_user, violations_made):
    debug, _ = violations_made
    client.force_login(make_user("ops", role=Role.OPERATIONS))
    for url in [
        reverse("security:violations"),
        reverse("security:violation", args=[debug.pk]),
        reverse("security:violations_csv"),
    ]:
        assert client.get(url).status_code == 403
    assert (
        client.post(reverse("security:violation_resolve", args=[debug.pk]), {"note": "x"}).status_code == 403
    )


def test_inventory_and_rules_pages(reviewer_client, violations_made):
    inventory = reviewer_client.get(reverse("security:inventory")).content.decode()
    assert "w-debug" in inventory and "w-old" in inventory
    rules = reviewer_client.get(reverse("security:policies")).content.decode()
    assert "worker-not-debug" in rules and "alert-only.yml" in rules


def test_csv_export_escapes_formulas(reviewer_client, violations_made):
    debug, _ = violations_made
    Instance.objects.filter(pk=debug.instance_id).update(name='=HYPERLINK("http://evil.example","x")')
    Violation.objects.filter(pk=debug.pk).update(justification="@SUM(1+1)")
    rows = list(csv.DictReader(io.StringIO(reviewer_client.get(reverse("security:violations_csv")).content.decode())))
    row = next(r for r in rows if r["policy"] == "worker-not-debug")
    assert row["resource_name"] == "'=HYPERLINK(\"http://evil.example\",\"x\")"
    assert row["justification"] == "'@SUM(1+1)"
    assert row["id"] == str(debug.pk), "numbers stay numbers"


@pytest.mark.parametrize("cell", ["=1+1", "+1", "-1+2", "@A1", "\t=1", "\r=1"])
def test_csv_cell_escapes_every_formula_start(cell):
    from core.csv_cells import csv_cell

    assert csv_cell(cell) == "'" + cell and csv_cell("plain") == "plain" and csv_cell(-3) == -3


def test_every_page_carries_a_content_security_policy(reviewer_client, violations_made, settings):
    page = reviewer_client.get(reverse("security:violations"))
    policy = page.headers["Content-Security-Policy"]
    directives = dict(d.split(" ", 1) for d in policy.split("; "))
    assert directives["script-src"] == "'self'", "no inline script, no eval"
    assert directives["style-src"] == "'self'" and directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    storage = settings.S3_PUBLIC_ENDPOINT_URL.rstrip("/")
    assert storage in directives["media-src"] and storage in directives["connect-src"]
    assert "blob:" in directives["worker-src"], "hls.js runs its demuxer in a blob: worker"
    login = reviewer_client.get(reverse("login"))
    assert login.headers["Content-Security-Policy"] == policy
