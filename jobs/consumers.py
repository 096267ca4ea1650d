"""Websocket consumers: authorize in connect(), join a group, forward events. No business logic.

The job consumer joins its group before reading the database, so nothing committed between the
read and the join can fall through the crack; the client drops what it then receives twice."""

from urllib.parse import parse_qs

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts import permissions
from accounts.live import access_group
from buildboard.lib.channel_layer import InboxConsumer

from . import events, logread
from .models import Build, Job

# A backlog frame carries at most this many characters of log, so one frame never gets huge.
BACKLOG_FRAME_CHARS = 512 * 1024
BACKLOG_QUERY_PARTS = 500


def in_thread(function):
    """Run a database read in the thread pool rather than in the one thread that all sync views share,
    so many viewers opening pages at once do not queue behind (or in front of) the worker API."""
    return database_sync_to_async(function, thread_sensitive=False)


def _query_int(scope: dict, name: str, default: int) -> int:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    try:
        return int(values[0]) if values else default
    except ValueError:
        return default


class ForwardingConsumer(InboxConsumer, AsyncJsonWebsocketConsumer):
    """Forwards channel-layer frames to the browser.

    Frames are forwarded without channels' per-message database connection cleanup: that is a hop
    through the single thread all sync views share, once per frame per viewer, which made a busy
    log wait behind its own viewers. Forwarding never touches the database. Frame types without a
    handler are ignored, so a new kind of announcement on a shared group closes no sockets."""

    forwarded = frozenset({"job.state", "log.parts", "build.state", "access.changed"})

    async def dispatch(self, message: dict) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            return
        if message["type"] in self.forwarded:
            await handler(message)
        else:
            await super().dispatch(message)


    async def join(self, *groups: str) -> None:
        """Join the groups, and the user's own access group: a changed role re-checks this socket."""
        user = self.scope.get("user")
        self.groups = [*groups, *([access_group(user.pk)] if user is not None and user.is_authenticated else [])]
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)

    async def leave(self) -> None:
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        self.groups = []

    async def access_changed(self, event: dict) -> None:
        """The user's roles changed: re-read them (one query per change, not per frame)."""
        permissions.forget_access(self.scope["user"])
        if not await in_thread(self.still_visible)():
            await self.leave()
            await self.close(code=4404)

    def still_visible(self) -> bool:
        return True


class JobConsumer(ForwardingConsumer):
    """Live state and log frames of one job: `?after=N` first replays stored parts after N."""

    async def connect(self) -> None:
        self.job_id = self.scope["url_route"]["kwargs"]["job_id"]
        await self.join(events.job_group(self.job_id))
        frames = await in_thread(self._first_frames)(self.job_id, _query_int(self.scope, "after", -1))
        if frames is None:
            await self.leave()
            await self.close(code=4404)
            return
        await self.accept()
        for frame in frames:
            await self.send_json(frame)

    def still_visible(self) -> bool:
        return Job.objects.visible_to(self.scope["user"]).filter(pk=self.job_id).exists()

    def _first_frames(self, job_id: int, after: int) -> list[dict] | None:
        """The job's current state and its stored parts after `after`; None if the user may not see it."""
        job = Job.objects.visible_to(self.scope["user"]).select_related("build").filter(pk=job_id).first()
        if job is None:
            return None
        return [events.job_state_frame(job), *self._backlog(job, after)]

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

        try:
            for part in logread.iter_parts(job, job.attempt, after, chunk=BACKLOG_QUERY_PARTS):
                batch.append({**part, "at": part["at"].isoformat()})
                size += len(part["content"])
                if size >= BACKLOG_FRAME_CHARS:
                    flush()
        except logread.LogUnavailable as e:
            return [{"type": "log.unavailable", "job_id": job.pk, "attempt": job.attempt, "message": e.message}]
        flush()
        return frames

    async def job_state(self, event: dict) -> None:
        await self.send_json(event)

    async def log_parts(self, event: dict) -> None:
        await self.send_json(event)


class BuildConsumer(ForwardingConsumer):
    """State frames of one build and its jobs, for the build page."""

    async def connect(self) -> None:
        self.build_id = self.scope["url_route"]["kwargs"]["build_id"]
        if not await in_thread(self.still_visible)():
            await self.close(code=4404)
            return
        await self.join(events.build_group(self.build_id))
        await self.accept()

    def still_visible(self) -> bool:
        return Build.objects.visible_to(self.scope["user"]).filter(pk=self.build_id).exists()

    async def job_state(self, event: dict) -> None:
        await self.send_json(event)

    async def build_state(self, event: dict) -> None:
        await self.send_json(event)


class BuildsConsumer(ForwardingConsumer):
    """Build state frames of all repositories, for the home and repository pages.

    The all-group carries private repositories too, so frames are filtered per viewer, in memory: the
    viewer's access is read once on connect (and again when their roles change), never per frame.
    A frame that does not say whose and whether private goes to nobody but staff."""

    async def connect(self) -> None:
        await self.refresh_access()
        await self.join(events.ALL_GROUP)
        await self.accept()

    async def refresh_access(self) -> None:
        self.access = await in_thread(permissions.access_for)(self.scope["user"])

    async def access_changed(self, event: dict) -> None:
        permissions.forget_access(self.scope["user"])
        await self.refresh_access()

    async def build_state(self, event: dict) -> None:
        private = event.get("private")
        if self.access.staff or private is False or (
                private is True and self.access.may_read(event.get("owner", ""), event.get("name", ""), True)):
            await self.send_json(event)

