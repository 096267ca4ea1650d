"""Websocket consumers: authorize in connect(), join a group, forward events. No business logic.

Each consumer joins its group before reading the database, so nothing committed between the read
and the join can fall through the crack; the client drops what it then receives twice."""

from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from . import events
from .models import Build, Job

# A backlog frame carries at most this many characters of log, so one frame never gets huge.
BACKLOG_FRAME_CHARS = 512 * 1024
BACKLOG_QUERY_PARTS = 500


def _is_staff(user) -> bool:
    return bool(user and user.is_authenticated and user.is_staff)


def _query_int(scope: dict, name: str, default: int) -> int:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    try:
        return int(values[0]) if values else default
    except ValueError:
        return default


class ForwardingConsumer(AsyncJsonWebsocketConsumer):
    """Ignores frame types it has no handler for, so a new kind of announcement on a shared group
    does not close every connected socket."""

    async def dispatch(self, message: dict) -> None:
        if getattr(self, get_handler_name(message), None) is not None:
            await super().dispatch(message)


class JobConsumer(ForwardingConsumer):
    """Live state and log frames of one job: `?after=N` first replays stored parts after N."""

    async def connect(self) -> None:
        job_id = self.scope["url_route"]["kwargs"]["job_id"]
        visible = await database_sync_to_async(
            lambda: Job.objects.visible_to(self.scope["user"]).filter(pk=job_id).exists()
        )()
        if not visible:
            await self.close(code=4404)
            return
        self.job_id = job_id
        self.groups = [events.job_group(job_id)]
        await self.channel_layer.group_add(self.groups[0], self.channel_name)
        await self.accept()
        job = await database_sync_to_async(Job.objects.select_related("build").get)(pk=job_id)
        await self.send_json(events.job_state_frame(job))
        after = _query_int(self.scope, "after", -1)
        for frame in await database_sync_to_async(self._backlog)(job, after):
            await self.send_json(frame)

    def _backlog(self, job: Job, after: int) -> list[dict]:
        """Stored parts after `after`, batched into frames shaped like live ones."""
        frames: list[dict] = []
        batch: list[dict] = []
        size = 0

        def flush() -> None:
            nonlocal batch, size
            if batch:
                frames.append({"type": "log.parts", "job_id": job.pk, "attempt": job.attempt, "parts": batch,
                               "persisted_through": job.log_persisted_through, "backlog": True})
            batch, size = [], 0

        rows = job.log_parts(after).values_list("number", "content", "final")
        for number, content, final in rows.iterator(chunk_size=BACKLOG_QUERY_PARTS):
            batch.append({"number": number, "content": content, "final": final})
            size += len(content)
            if size >= BACKLOG_FRAME_CHARS:
                flush()
        flush()
        return frames

    async def job_state(self, event: dict) -> None:
        await self.send_json(event)

    async def log_parts(self, event: dict) -> None:
        await self.send_json(event)


class BuildConsumer(ForwardingConsumer):
    """State frames of one build and its jobs, for the build page."""

    async def connect(self) -> None:
        build_id = self.scope["url_route"]["kwargs"]["build_id"]
        visible = await database_sync_to_async(
            lambda: Build.objects.visible_to(self.scope["user"]).filter(pk=build_id).exists()
        )()
        if not visible:
            await self.close(code=4404)
            return
        self.groups = [events.build_group(build_id)]
        await self.channel_layer.group_add(self.groups[0], self.channel_name)
        await self.accept()

    async def job_state(self, event: dict) -> None:
        await self.send_json(event)

    async def build_state(self, event: dict) -> None:
        await self.send_json(event)


class BuildsConsumer(ForwardingConsumer):
    """Build state frames of all repositories, for the home and repository pages.

    The all-group carries private repositories too, so frames are filtered per viewer: only staff
    get frames of private repositories, and frames that do not say whether they are private."""

    async def connect(self) -> None:
        self.staff = _is_staff(self.scope["user"])
        self.groups = [events.ALL_GROUP]
        await self.channel_layer.group_add(events.ALL_GROUP, self.channel_name)
        await self.accept()

    async def build_state(self, event: dict) -> None:
        if self.staff or event.get("private") is False:
            await self.send_json(event)

