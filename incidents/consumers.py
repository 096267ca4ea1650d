"""Websocket of the public status page: joins the page's group and forwards its doorbell frames."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from buildboard.lib.channel_layer import InboxConsumer

from . import live
from .models import StatusPageState


class StatusConsumer(InboxConsumer, AsyncJsonWebsocketConsumer):
    """Public, so no authorization. The first frame gives the current sequence, so a client that
    rendered an older page (or missed frames) refetches at once."""

    groups = [live.GROUP]

    async def connect(self) -> None:
        await self.accept()
        seq = await database_sync_to_async(lambda: StatusPageState.current().seq)()
        await self.send_json({"type": "status.changed", "seq": seq})

    async def status_changed(self, event: dict) -> None:
        await self.send_json(event)
