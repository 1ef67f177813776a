"""The asset page's live progress socket: thin.

connect() authenticates, authorizes the asset, subscribes to the job's messages and sends a
snapshot; then every `job.message` the pipeline publishes is forwarded. The subscription goes
through studio.fanout (one channel-layer subscription per process and job, see there why).
Messages carry the job's sequence number: the snapshot is current to its `seq`, so anything at
or below it is dropped here (and the page drops duplicates too). A client may ask for a fresh
snapshot with {"action": "snapshot"} when it sees a gap.
"""

import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from pipeline.selectors import asset_visible_to, job_latest, job_snapshot
from studio import fanout
from studio.access import may_view_assets

CLOSE_FORBIDDEN = 4403  # not signed in, or no role that may view assets
CLOSE_NOT_FOUND = 4404  # no such asset for this user (another publisher's looks the same)
SNAPSHOT_MIN_INTERVAL_S = 1.0


def _job_to_watch(user, asset_id: int) -> tuple[int | None, int | None]:
    """(the asset's latest job id, None), or (None, the close code refusing this user)."""
    if not user.is_authenticated or not may_view_assets(user):
        return None, CLOSE_FORBIDDEN
    asset = asset_visible_to(asset_id=asset_id, user=user)
    job = job_latest(asset=asset) if asset is not None else None
    if job is None:
        return None, CLOSE_NOT_FOUND
    return job.pk, None


class AssetProgressConsumer(AsyncJsonWebsocketConsumer):
    job_id: int | None = None
    snapshot_seq = 0
    last_snapshot_at = 0.0
    # Messages relayed while the first snapshot is read; sent after it, if newer.
    held: list[tuple[dict, str]] | None = None

    async def connect(self) -> None:
        # Accept first so that a refusal carries its reason as a close code the page can read.
        await self.accept()
        user = self.scope.get("user")
        if user is None:
            await self.close(code=CLOSE_FORBIDDEN)
            return
        asset_id = int(self.scope["url_route"]["kwargs"]["asset_id"])
        job_id, refusal = await database_sync_to_async(_job_to_watch)(user, asset_id)
        if refusal is not None:
            await self.close(code=refusal)
            return
        self.job_id = job_id
        self.held = []
        # Subscribe before the snapshot: a change in between arrives as a message with a higher seq.
        await fanout.watch(job_id, self)
        await self.send_snapshot()
        held, self.held = self.held, None
        for event, text in held:
            await self.relay_message(event, text)

    async def disconnect(self, code: int) -> None:
        if self.job_id is not None:
            await fanout.unwatch(self.job_id, self)

    async def send_snapshot(self) -> None:
        snapshot = await database_sync_to_async(job_snapshot)(job_id=self.job_id)
        self.snapshot_seq = snapshot["seq"]
        self.last_snapshot_at = time.monotonic()
        await self.send_json({"type": "snapshot", **snapshot})

    async def receive_json(self, content, **kwargs) -> None:
        if self.job_id is None or not isinstance(content, dict) or content.get("action") != "snapshot":
            return
        if time.monotonic() - self.last_snapshot_at >= SNAPSHOT_MIN_INTERVAL_S:
            await self.send_snapshot()

    async def relay_message(self, event: dict, text: str) -> None:
        """A job message from the relay, already encoded as {"type": "message", ...}."""
        if self.held is not None:
            self.held.append((event, text))
        elif event.get("seq", 0) > self.snapshot_seq:
            await self.send(text_data=text)
