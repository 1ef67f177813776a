"""The backups pages: operations staff only, bounded queries, exports, restore form, live
progress over a websocket."""

import csv
import io
import json
import os

import pytest
from django.test import Client
from django.urls import reverse

from backups.models import BackupRun, Failure, Restore, RunTrigger
from backups.services import runs
from core.roles import Role
from tests.backups.bitrot import flip_byte_on_disk
from tests.backups.conftest import run_policy

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops(make_user):
    client = Client()
    client.force_login(make_user("ops", role=Role.OPERATIONS))
    return client


@pytest.fixture
def history(make_policy, put, offsite_server, tag):
    """Two finished runs, the second with a repaired corrupted copy."""
    policy = make_policy()
    data = os.urandom(20_000)
    put(f"uploads/t{tag}/a.bin", data)
    put(f"uploads/t{tag}/b.bin", os.urandom(500))
    first = run_policy(policy)
    flip_byte_on_disk(offsite_server.data_dir, data)
    second = run_policy(policy, verify="full")
    return policy, first, second


def test_dashboard_shows_coverage_and_the_oldest_verification(ops, history, django_assert_max_num_queries):
    policy, _, _ = history
    with django_assert_max_num_queries(20):
        response = ops.get(reverse("backups:home"))
    assert response.status_code == 200
    page = response.content.decode()
    assert policy.name in page and "Oldest verification" in page and "Objects protected" in page
    assert f"Run {policy.name} now" in page


def test_runs_page_draws_trend_charts_and_filters(ops, history, django_assert_max_num_queries):
    policy, first, second = history
    with django_assert_max_num_queries(15):
        response = ops.get(reverse("backups:runs"), {"policy": policy.pk})
    page = response.content.decode()
    assert page.count("<svg") == 4 and "Bytes copied per run" in page
    assert f"#{first.pk}" in page and f"#{second.pk}" in page
    assert "No run matches" in ops.get(reverse("backups:runs"), {"state": "failed", "policy": policy.pk}).content.decode()


def test_run_detail_shows_the_root_cause_chain(ops, history, django_assert_max_num_queries):
    _, _, second = history
    with django_assert_max_num_queries(15):
        response = ops.get(reverse("backups:run_detail", args=[second.pk]))
    page = response.content.decode()
    assert "Backup copy corrupted" in page and "Chain from the failure to its root" in page
    assert "Restart: repair task" in page and "Root cause" in page


def test_exports_in_csv_and_json(ops, history):
    policy, first, second = history
    rows = list(csv.DictReader(io.StringIO(b"".join(ops.get(reverse("backups:runs_csv"), {"policy": policy.pk}).streaming_content).decode())))
    assert [int(r["id"]) for r in rows] == [second.pk, first.pk]
    assert rows[1]["objects_copied"] == "2"
    data = ops.get(reverse("backups:runs_json"), {"policy": policy.pk}).json()
    assert data["runs"][0]["objects_failed"] == 1 and data["runs"][0]["objects_repaired"] == 1
    detail = ops.get(reverse("backups:run_json", args=[second.pk])).json()
    assert detail["failures"][0]["cause"] == "backup_corrupted"
    assert any(step["step"] == "Root cause" for step in detail["failures"][0]["chain"])
    failures = b"".join(ops.get(reverse("backups:run_failures_csv", args=[second.pk])).streaming_content).decode()
    assert "backup_corrupted" in failures and "Root cause" in failures


def test_starting_a_run_queues_it_and_a_second_start_points_to_the_first(
    ops, make_policy, redis_conn, django_capture_on_commit_callbacks
):
    import django_rq

    policy = make_policy()
    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(reverse("backups:run_start"), {"policy": policy.pk, "verify": "plan"})
    run = BackupRun.objects.get(policy=policy)
    assert response["Location"] == reverse("backups:run_detail", args=[run.pk])
    assert run.trigger == RunTrigger.MANUAL
    assert f"backup-run-{run.pk}" in django_rq.get_queue("backup").job_ids

    again = ops.post(reverse("backups:run_start"), {"policy": policy.pk}, follow=True)
    assert f"run #{run.pk} of {policy.name} is still" in again.content.decode()
    assert BackupRun.objects.filter(policy=policy).count() == 1


def test_restore_form_explains_what_is_wrong(ops, make_policy):
    policy = make_policy()
    response = ops.post(reverse("backups:restore_new"), {"policy": policy.pk, "scope": "asset", "selector": "abc",
                                                          "destination": "original"})
    page = response.content.decode()
    assert response.status_code == 400
    assert "An asset is named by its number" in page and "Confirm that the original objects may be replaced" in page
    assert 'role="alert"' in page
    nothing = ops.post(reverse("backups:restore_new"), {"policy": policy.pk, "scope": "object", "selector": "nope",
                                                         "destination": "other", "target_bucket": "b"})
    assert "No backed-up object" in nothing.content.decode()


def test_restore_from_the_page_is_queued_and_shown(ops, history, redis_conn, tag, django_capture_on_commit_callbacks):
    import django_rq

    policy, _, _ = history
    prefill = ops.get(reverse("backups:restore_new"), {"policy": policy.pk, "scope": "object", "selector": f"uploads/t{tag}/a.bin"})
    assert f'value="uploads/t{tag}/a.bin"' in prefill.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(reverse("backups:restore_new"), {
            "policy": policy.pk, "scope": "prefix", "selector": f"uploads/t{tag}/", "destination": "other",
            "target_bucket": "reelflow-media", "target_prefix": "restored/",
        })
    restore = Restore.objects.get(policy=policy)
    assert response["Location"] == reverse("backups:restore_detail", args=[restore.pk])
    assert f"backup-restore-{restore.pk}" in django_rq.get_queue("backup").job_ids
    detail = ops.get(response["Location"]).content.decode()
    assert "Waiting for a backup worker" in detail and f"uploads/t{tag}/a.bin" in detail


def test_retrying_a_failure_queues_the_check(ops, history, redis_conn, django_capture_on_commit_callbacks):
    import django_rq

    _, _, second = history
    failure = Failure.objects.get(run=second)
    with django_capture_on_commit_callbacks(execute=True):
        response = ops.post(reverse("backups:failure_retry", args=[failure.pk]))
    assert response.status_code == 302
    assert django_rq.get_queue("backup").count == 1


def test_pages_are_for_operations_staff_only(make_user, make_policy):
    client = Client()
    client.force_login(make_user("pub", role=Role.PUBLISHER))
    assert client.get(reverse("backups:runs")).status_code == 403
    assert client.post(reverse("backups:run_start"), {"policy": make_policy().pk}).status_code == 403


@pytest.mark.django_db(transaction=True)
def test_live_progress_socket_sends_snapshots_to_operations_staff_only(make_user, make_policy, redis_conn):
    from asgiref.sync import async_to_sync
    from channels.testing import WebsocketCommunicator

    from backups import progress
    from config.asgi import application

    policy = make_policy()
    run = runs.run_start(policy=policy, trigger=RunTrigger.MANUAL)

    def push_progress():
        BackupRun.objects.filter(pk=run.pk).update(objects_scanned=42)
        progress.Publisher("run", run.pk).maybe()

    async def talk(user):
        communicator = WebsocketCommunicator(application, f"/ws/backups/run/{run.pk}/", headers=[(b"origin", b"http://127.0.0.1")])
        communicator.scope["user"] = user
        connected, _ = await communicator.connect()
        first = await communicator.receive_output(timeout=5)
        if first["type"] == "websocket.close":
            return connected, first, None
        snapshot = json.loads(first["text"])
        await database_sync(push_progress)()
        pushed = json.loads((await communicator.receive_output(timeout=5))["text"])
        await communicator.disconnect()
        return connected, snapshot, pushed

    from channels.db import database_sync_to_async as database_sync

    _, snapshot, pushed = async_to_sync(talk)(make_user("opsws", role=Role.OPERATIONS))
    assert snapshot["id"] == run.pk and snapshot["phase"] == "scan" and snapshot["active"] is True
    assert pushed["objects_scanned"] == 42

    _, closed, _ = async_to_sync(talk)(make_user("pubws", role=Role.PUBLISHER))
    assert closed["code"] == 4403
