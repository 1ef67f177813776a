"""Live progress of a backup run or restore: thin.

connect() authenticates (operations staff only), checks the run or restore exists, joins its
group and sends a snapshot; every snapshot the services push afterwards is forwarded.
"""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from backups import progress, selectors

CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


def _snapshot_for(user, kind: str, pk: int) -> tuple[dict | None, int | None]:
    if not user.is_authenticated or not user.has_perm("core.access_operations"):
        return None, CLOSE_FORBIDDEN
    snapshot = selectors.progress_snapshot(kind=kind, pk=pk)
    return (snapshot, None) if snapshot is not None else (None, CLOSE_NOT_FOUND)


class BackupProgressConsumer(AsyncJsonWebsocketConsumer):
    group: str | None = None

    async def connect(self) -> None:
        # Accept first so that a refusal carries its reason as a close code the page can read.
        await self.accept()
        user = self.scope.get("user")
        kwargs = self.scope["url_route"]["kwargs"]
        kind, pk = kwargs["kind"], int(kwargs["pk"])
        if user is None or kind not in progress.KINDS:
            await self.close(code=CLOSE_FORBIDDEN if user is None else CLOSE_NOT_FOUND)
            return
        snapshot, refusal = await database_sync_to_async(_snapshot_for)(user, kind, pk)
        if refusal is not None:
            await self.close(code=refusal)
            return
        # Join before sending the snapshot so no push between the two is missed.
        self.group = progress.group_name(kind, pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.send_json({"type": "snapshot", **snapshot})

    async def disconnect(self, code: int) -> None:
        if self.group is not None:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def backup_progress(self, event: dict) -> None:
        await self.send_json({"type": "snapshot", **event["snapshot"]})
