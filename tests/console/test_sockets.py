"""The console's sockets through the real ASGI stack (origin check, session cookie, Channels
auth) and the real channel layer: who is refused, what operations staff receive."""

import pytest
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.asgi import application
from core.roles import Role
from pipeline import progress
from pipeline.models import JobState, UnitState
from pipeline.services.jobs import job_cancel
from tests.console.factories import job_with_units

pytestmark = pytest.mark.django_db(transaction=True)
D, Q, R = UnitState.DONE, UnitState.QUEUED, UnitState.RUNNING


@pytest.fixture
def ladders(transactional_db):
    from pipeline.ladders import ladders_sync
    from pipeline.models import AudioRenditionSpec, Profile, VideoRenditionSpec

    ladders_sync(Profile, VideoRenditionSpec, AudioRenditionSpec)


@pytest.fixture
def job(ladders, make_user, redis_conn):
    return job_with_units(make_user("pat", role=Role.PUBLISHER), unit_states={"h264-240p": [D, R], "aac-96k": [Q]})


def socket(path: str, user=None) -> WebsocketCommunicator:
    """A communicator presenting the user's session cookie from the site's own origin."""
    headers = [(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1")]
    if user is not None:
        client = Client()
        client.force_login(user)
        headers.append((b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def close_code(comm: WebsocketCommunicator) -> int:
    connected, _ = await comm.connect()
    assert connected, "refusals are sent as close codes after accepting"
    message = await comm.receive_output(timeout=5)
    assert message["type"] == "websocket.close"
    await comm.wait()
    return message["code"]


@pytest.mark.parametrize("role", [None, Role.PUBLISHER, Role.SECURITY])
def test_only_operations_staff_may_open_the_console_sockets(role, job, make_user):
    user = make_user(f"u-{role or 'anon'}".lower(), role=role) if role else None
    for path in ("/ws/ops/jobs/", f"/ws/ops/jobs/{job.pk}/"):
        assert async_to_sync(close_code)(socket(path, user)) == 4403, (role, path)


def test_another_sites_page_cannot_open_them(job, make_user):
    user = make_user("olga", role=Role.OPERATIONS)
    client = Client()
    client.force_login(user)
    comm = WebsocketCommunicator(application, "/ws/ops/jobs/", headers=[
        (b"origin", b"https://evil.example"), (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())])

    async def scenario():
        connected, _ = await comm.connect()
        return connected

    assert async_to_sync(scenario)() is False


def test_jobs_socket_forwards_state_changes_and_renders_rows_with_counts(job, make_user):
    operator = make_user("olga", role=Role.OPERATIONS)

    comm = socket("/ws/ops/jobs/", operator)

    async def scenario():
        connected, _ = await comm.connect()
        assert connected
        ready = await comm.receive_json_from(timeout=5)
        await comm.send_json_to({"action": "refresh", "ids": [job.pk, 999999], "query": "state=encoding"})
        rows = await comm.receive_json_from(timeout=5)
        # A real state change: the service commits, then publishes to the job's and the "jobs" groups.
        await async_to_sync_free(job_cancel)(job_id=job.pk, actor=operator)
        message = await comm.receive_json_from(timeout=5)
        await comm.send_json_to({"action": "refresh", "ids": [job.pk], "query": "state=encoding"})
        gone = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return ready, rows, message, gone

    ready, rows, message, gone = async_to_sync(scenario)()
    assert ready == {"type": "ready"}
    assert rows["asked"] == [job.pk, 999999] and [r["id"] for r in rows["rows"]] == [job.pk]
    assert f'data-job="{job.pk}"' in rows["rows"][0]["html"] and "1/3" in rows["rows"][0]["html"]
    assert rows["counts"]["encoding"] == 1 and rows["counts"]["total"] == 1
    assert message == {"type": "message", "job": job.pk, "seq": 1, "state": "cancelled", "reason": ""}
    assert gone["rows"] == [], "a job that no longer matches the filters is not sent back"


def test_job_socket_sends_a_snapshot_then_newer_messages(job, make_user):
    operator = make_user("olga", role=Role.OPERATIONS)
    progress.next_seq(job.pk)  # an old message the snapshot already covers

    comm = socket(f"/ws/ops/jobs/{job.pk}/", operator)

    async def scenario():
        connected, _ = await comm.connect()
        assert connected
        snapshot = await comm.receive_json_from(timeout=5)
        await async_to_sync_free(progress.publish_rollback_unsafe)(job.pk, {"kind": "unit", "unit": 1, "state": "done"})
        message = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return snapshot, message

    snapshot, message = async_to_sync(scenario)()
    assert snapshot["type"] == "snapshot" and snapshot["seq"] == 1 and snapshot["job"]["state"] == JobState.ENCODING
    assert len(snapshot["units"]) == 3
    assert message["type"] == "message" and message["seq"] == 2 and message["kind"] == "unit"


def test_job_socket_for_a_missing_job_closes_with_4404(job, make_user):
    operator = make_user("olga", role=Role.OPERATIONS)
    assert async_to_sync(close_code)(socket("/ws/ops/jobs/999999/", operator)) == 4404


def async_to_sync_free(fn):
    """Run a blocking function (it calls async_to_sync itself) off the event loop."""
    from asgiref.sync import sync_to_async

    return sync_to_async(fn, thread_sensitive=False)
