"""Websocket consumers: authorize in connect(), join a group, forward events. No business logic."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import events
from .models import Job


class JobConsumer(AsyncJsonWebsocketConsumer):
    """Live state and log frames of one job."""

    async def connect(self) -> None:
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        visible = await database_sync_to_async(
            lambda: Job.objects.visible_to(self.scope["user"]).filter(pk=job_id).exists()
        )()
        if not visible:
            await self.close(code=4404)
            return
        self.groups = [events.job_group(job_id)]
        await self.channel_layer.group_add(self.groups[0], self.channel_name)
        await self.accept()

    async def job_state(self, event: dict) -> None:
        await self.send_json(event)

    async def log_parts(self, event: dict) -> None:
        await self.send_json(event)
