"""The live progress socket, through channels' WebsocketCommunicator and the real channel layer
(Redis): who is refused, the snapshot, forwarding, and sequence numbers."""

import asyncio

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.test import Client

from config.routing import websocket_urlpatterns
from core.roles import Role
from pipeline import progress
from pipeline.models import JobState
from tests.factories import ChunkFactory, RenditionFactory, UnitFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def encoding_job(alice, make_asset, redis_conn):
    asset, job = make_asset(alice, job_state=JobState.ENCODING)
    rendition = RenditionFactory(job=job, name="h264-360p", units_total=2)
    units = [UnitFactory(rendition=rendition, chunk=ChunkFactory(job=job, index=i)) for i in range(2)]
    return asset, job, units


def communicator(asset_id: int, user=None) -> WebsocketCommunicator:
    comm = WebsocketCommunicator(URLRouter(websocket_urlpatterns), f"/ws/studio/assets/{asset_id}/")
    if user is not None:
        comm.scope["user"] = user
    return comm


def run(scenario):
    return async_to_sync(scenario)()


async def close_code(comm: WebsocketCommunicator) -> int:
    connected, _ = await comm.connect()
    assert connected, "refusals are sent as close codes after accepting"
    message = await comm.receive_output(timeout=5)
    assert message["type"] == "websocket.close"
    await comm.wait()
    return message["code"]


def test_owner_gets_a_snapshot_first(alice, encoding_job):
    asset, job, units = encoding_job

    async def scenario():
        comm = communicator(asset.pk, alice)
        connected, _ = await comm.connect()
        assert connected
        snapshot = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return snapshot

    snapshot = run(scenario)
    assert snapshot["type"] == "snapshot" and snapshot["job"]["id"] == job.pk
    assert snapshot["job"]["state"] == JobState.ENCODING
    assert [c["index"] for c in snapshot["chunks"]] == [0, 1]
    assert {u["id"] for u in snapshot["units"]} == {u.pk for u in units}
    assert snapshot["renditions"][0]["name"] == "h264-360p"


@pytest.mark.parametrize(
    ("who", "code"),
    [("anonymous", 4403), ("other publisher", 4404), ("security", 4403), ("missing asset", 4404)],
)
def test_anyone_who_may_not_see_the_asset_is_refused(who, code, encoding_job, bob, make_user):
    from django.contrib.auth.models import AnonymousUser

    asset, _, _ = encoding_job
    user = {
        "anonymous": AnonymousUser(),
        "other publisher": bob,
        "security": make_user("sec", role=Role.SECURITY),
        "missing asset": bob,
    }[who]
    asset_id = asset.pk + 1000 if who == "missing asset" else asset.pk

    async def scenario():
        return await close_code(communicator(asset_id, user))

    assert run(scenario) == code


def test_operations_staff_may_watch_any_asset(encoding_job, make_user):
    asset, job, _ = encoding_job
    ops = make_user("ops", role=Role.OPERATIONS)

    async def scenario():
        comm = communicator(asset.pk, ops)
        await comm.connect()
        snapshot = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return snapshot

    assert run(scenario)["job"]["id"] == job.pk


def test_changes_are_forwarded_and_stale_sequence_numbers_dropped(alice, encoding_job):
    asset, job, units = encoding_job
    # Something happened before the page connected: the snapshot includes it.
    progress.publish_rollback_unsafe(job.pk, {"kind": "job", "state": "encoding", "reason": ""})

    async def scenario():
        comm = communicator(asset.pk, alice)
        await comm.connect()
        snapshot = await comm.receive_json_from(timeout=5)
        layer = get_channel_layer()
        # A message the snapshot already reflects (delivered late): dropped.
        await layer.group_send(
            progress.job_group(job.pk),
            {
                "type": "job.message",
                "seq": snapshot["seq"],
                "job": job.pk,
                "kind": "job",
                "state": "probing",
                "reason": "",
            },
        )
        await sync_to_async(progress.publish_rollback_unsafe)(
            job.pk,
            {
                "kind": "progress",
                "unit": units[0].pk,
                "rendition": "h264-360p",
                "rendition_id": units[0].rendition_id,
                "chunk": 0,
                "percent": 42.0,
                "fps": 120.0,
                "speed": 4.8,
                "eta_s": 1.2,
                "frame": 42,
            },
        )
        forwarded = await comm.receive_json_from(timeout=5)
        nothing_else = await comm.receive_nothing(timeout=0.3)
        await comm.disconnect()
        return snapshot, forwarded, nothing_else

    snapshot, forwarded, nothing_else = run(scenario)
    assert snapshot["seq"] == 1
    assert forwarded["type"] == "message" and forwarded["kind"] == "progress"
    assert forwarded["seq"] == 2 and forwarded["percent"] == 42.0 and forwarded["unit"] == units[0].pk
    assert nothing_else


def test_a_reconnect_gets_a_fresh_snapshot_covering_what_it_missed(alice, encoding_job):
    from pipeline.services.units import unit_start

    asset, job, units = encoding_job

    async def scenario():
        first = communicator(asset.pk, alice)
        await first.connect()
        before = await first.receive_json_from(timeout=5)
        await first.disconnect()
        # While the page is away, a unit starts (a state change written to the database).
        await sync_to_async(unit_start)(unit_id=units[1].pk, worker="w1")
        second = communicator(asset.pk, alice)
        await second.connect()
        after = await second.receive_json_from(timeout=5)
        await second.disconnect()
        return before, after

    before, after = run(scenario)
    state = {u["id"]: u["state"] for u in after["units"]}
    assert state[units[1].pk] == "running" and after["seq"] > before["seq"]


def test_client_may_ask_for_a_snapshot(alice, encoding_job):
    asset, job, _ = encoding_job

    async def scenario():
        comm = communicator(asset.pk, alice)
        await comm.connect()
        await comm.receive_json_from(timeout=5)
        from studio import consumers

        consumers.SNAPSHOT_MIN_INTERVAL_S = 0
        try:
            await comm.send_json_to({"action": "snapshot"})
            again = await comm.receive_json_from(timeout=5)
            await comm.send_json_to({"action": "something else"})
            quiet = await comm.receive_nothing(timeout=0.3)
        finally:
            consumers.SNAPSHOT_MIN_INTERVAL_S = 1.0
        await comm.disconnect()
        return again, quiet

    again, quiet = run(scenario)
    assert again["type"] == "snapshot" and quiet


def test_real_asgi_stack_authenticates_by_session_cookie_and_checks_origin(alice, encoding_job, settings):
    from config.asgi import application

    asset, job, _ = encoding_job
    client = Client()
    client.force_login(alice)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode()
    path = f"/ws/studio/assets/{asset.pk}/"

    async def scenario():
        good = WebsocketCommunicator(
            application, path, headers=[(b"cookie", cookie), (b"origin", b"http://127.0.0.1:8000")]
        )
        connected, _ = await good.connect()
        snapshot = await good.receive_json_from(timeout=5)
        await good.disconnect()
        evil = WebsocketCommunicator(
            application, path, headers=[(b"cookie", cookie), (b"origin", b"https://evil.example")]
        )
        evil_connected, _ = await evil.connect()
        no_cookie = WebsocketCommunicator(application, path, headers=[(b"origin", b"http://127.0.0.1:8000")])
        anonymous = await close_code(no_cookie)
        return connected, snapshot, evil_connected, anonymous

    connected, snapshot, evil_connected, anonymous = run(scenario)
    assert connected and snapshot["job"]["id"] == job.pk
    assert not evil_connected
    assert anonymous == 4403


def test_many_sockets_share_one_subscription_and_each_gets_every_message(alice, encoding_job):
    from studio import fanout

    asset, job, units = encoding_job
    sockets = 60

    async def scenario():
        comms = [communicator(asset.pk, alice) for _ in range(sockets)]
        for comm in comms:
            await comm.connect()
            await comm.receive_json_from(timeout=5)
        shared = fanout.watchers_count(job.pk)
        for n in range(3):
            await sync_to_async(progress.publish_rollback_unsafe)(
                job.pk,
                {
                    "kind": "unit",
                    "unit": units[0].pk,
                    "rendition_id": units[0].rendition_id,
                    "chunk": 0,
                    "state": "running",
                    "n": n,
                },
            )
        received = [[(await comm.receive_json_from(timeout=5))["n"] for _ in range(3)] for comm in comms]
        for comm in comms:
            await comm.disconnect()
        return shared, received, fanout.watchers_count(job.pk)

    shared, received, left = run(scenario)
    assert shared == sockets and left == 0
    assert all(r == [0, 1, 2] for r in received)
    assert not redis_group_members(job.pk)


def redis_group_members(job_id: int) -> list:
    import django_rq
    from django.conf import settings

    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    return django_rq.get_connection("default").zrange(f"{prefix}:group:{progress.job_group(job_id)}", 0, -1)


def test_the_relay_renews_a_lost_subscription(alice, encoding_job, monkeypatch, redis_conn):
    """Redis forgot the group (a restart, channels_redis's group expiry): sockets keep hearing."""
    from django.conf import settings

    from studio import fanout

    monkeypatch.setattr(fanout, "REFRESH_S", 0.2)
    asset, job, units = encoding_job
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]

    async def scenario():
        comm = communicator(asset.pk, alice)
        await comm.connect()
        await comm.receive_json_from(timeout=5)
        await sync_to_async(redis_conn.delete)(f"{prefix}:group:{progress.job_group(job.pk)}")
        await asyncio.sleep(0.6)
        await sync_to_async(progress.publish_rollback_unsafe)(
            job.pk, {"kind": "job", "state": "packaging", "reason": ""}
        )
        message = await comm.receive_json_from(timeout=5)
        await comm.disconnect()
        return message

    assert run(scenario)["state"] == "packaging"
