"""The security pages' live feed: new alerts as they are raised."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from security.selectors import alerts_snapshot
from security.services.alerts import ALERTS_GROUP


def _can_review(user) -> bool:
    return bool(user and user.is_authenticated and user.is_active and user.has_perm("core.access_security"))


class SecurityAlertsConsumer(AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        if not await database_sync_to_async(_can_review)(self.scope.get("user")):
            await self.close(code=4403)
            return
        await self.channel_layer.group_add(ALERTS_GROUP, self.channel_name)
        await self.accept()
        await self.send_json({"type": "snapshot", "alerts": await database_sync_to_async(alerts_snapshot)()})

    async def disconnect(self, code) -> None:
        await self.channel_layer.group_discard(ALERTS_GROUP, self.channel_name)

    async def alert_raised(self, event: dict) -> None:
        await self.send_json({"type": "alert", "alert": event["alert"]})
