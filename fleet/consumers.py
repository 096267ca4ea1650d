"""The fleet page's doorbell: staff only; frames say something changed and the page refetches its fragment."""

from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts import permissions
from buildboard.lib.channel_layer import InboxConsumer

from .events import FLEET_GROUP


class FleetConsumer(InboxConsumer, AsyncJsonWebsocketConsumer):
    async def connect(self) -> None:
        user = self.scope.get("user")
        if not permissions.may_operate_fleet(user):
            await self.close(code=4403)
            return
        self.groups = [FLEET_GROUP]
        await self.channel_layer.group_add(FLEET_GROUP, self.channel_name)
        await self.accept()

    async def fleet_changed(self, event: dict) -> None:
        await self.send_json(event)
