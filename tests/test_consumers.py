"""Websocket consumers over the real Redis channel layer: backlog replay, live frames, access rules."""

import asyncio
import json

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from django.contrib.auth.models import AnonymousUser

from jobs import tasks
from jobs.models import Repository
from jobs.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)

APP = URLRouter(websocket_urlpatterns)
AT = "2026-11-26T10:00:00+00:00"


def run(coroutine):
    async def main():
        return await coroutine

    return async_to_sync(main)()


class Socket(ApplicationCommunicator):
    """A websocket client speaking ASGI to the consumers directly (channels.testing needs daphne)."""

    def __init__(self, path: str, user):
        route, _, query = path.partition("?")
        super().__init__(APP, {"type": "websocket", "path": route, "query_string": query.encode(), "headers": [],
                               "subprotocols": [], "user": user or AnonymousUser()})

    async def connect(self) -> tuple[bool, int | None]:
        await self.send_input({"type": "websocket.connect"})
        reply = await self.receive_output(5)
        return reply["type"] == "websocket.accept", reply.get("code")

    async def receive_json_from(self, timeout: float = 5) -> dict:
        reply = await self.receive_output(timeout)
        assert reply["type"] == "websocket.send", reply
        return json.loads(reply["text"])

    async def receive_nothing(self, timeout: float = 0.1) -> bool:
        return await super().receive_nothing(timeout)

    async def disconnect(self) -> None:
        await self.send_input({"type": "websocket.disconnect", "code": 1000})
        await self.wait(5)


async def connect(path: str, user=None) -> tuple[Socket, bool, int | None]:
    socket = Socket(path, user)
    connected, code = await socket.connect()
    return socket, connected, code


async def frames_until(communicator, predicate, timeout=5.0) -> list[dict]:
    frames = []
    while not frames or not predicate(frames[-1]):
        frames.append(await communicator.receive_json_from(timeout=timeout))
    return frames


def store(job, *numbers, final_at=None):
    tasks.ingest_log_parts(job.pk, job.attempt, [
        {"number": n, "content": f"line {n}\n", **({"final": True} if n == final_at else {})} for n in numbers])


@pytest.fixture
def private_build(make_build):
    build = make_build(repository="acme/secret")
    Repository.objects.filter(pk=build.repository_id).update(private=True)
    return build


def test_job_socket_replays_stored_parts_after_n_then_forwards_live_ones(job):
    store(job, 0, 1, 2, 3)

    async def scenario():
        ws, connected, _ = await connect(f"/ws/jobs/{job.pk}/?after=1")
        assert connected
        first = await ws.receive_json_from(timeout=5)
        assert first["type"] == "job.state" and first["job_id"] == job.pk and first["attempt"] == 1
        backlog = await ws.receive_json_from(timeout=5)
        assert backlog["type"] == "log.parts"
        assert [p["number"] for p in backlog["parts"]] == [2, 3]
        assert backlog["parts"][0]["content"] == "line 2\n"
        await database_sync_to_async(store)(job, 4, 5, final_at=5)
        live = await frames_until(ws, lambda f: f["type"] == "log.parts")
        assert [p["number"] for p in live[-1]["parts"]] == [4, 5] and live[-1]["parts"][1]["final"] is True
        await ws.disconnect()

    run(scenario())


def test_job_socket_without_after_replays_the_whole_log_in_bounded_frames(job, monkeypatch):
    from jobs import consumers

    monkeypatch.setattr(consumers, "BACKLOG_FRAME_CHARS", 20)
    store(job, *range(10))

    async def scenario():
        ws, connected, _ = await connect(f"/ws/jobs/{job.pk}/")
        assert connected
        await ws.receive_json_from(timeout=5)  # job.state
        numbers = []
        while len(numbers) < 10:
            frame = await ws.receive_json_from(timeout=5)
            assert frame["type"] == "log.parts" and len(frame["parts"]) <= 3
            numbers += [p["number"] for p in frame["parts"]]
        assert numbers == list(range(10))
        await ws.disconnect()

    run(scenario())


def test_job_socket_pushes_state_changes_with_increasing_seq(job):
    async def scenario():
        ws, _, _ = await connect(f"/ws/jobs/{job.pk}/")
        initial = await ws.receive_json_from(timeout=5)
        await database_sync_to_async(tasks.apply_job_state)(job.pk, 1, "started", AT, worker="w9")
        frame = (await frames_until(ws, lambda f: f["type"] == "job.state"))[-1]
        assert frame["state"] == "started" and frame["worker"] == "w9" and frame["seq"] > initial["seq"]
        await ws.disconnect()

    run(scenario())


def test_private_job_and_build_sockets_close_for_anonymous_but_open_for_staff(private_build, alice, bob):
    job = private_build.jobs.get()

    async def scenario():
        for path in (f"/ws/jobs/{job.pk}/", f"/ws/builds/{private_build.pk}/", "/ws/jobs/999999/"):
            for user in (None, bob):
                ws, connected, code = await connect(path, user)
                assert not connected and code == 4404, path
                await ws.disconnect()
        for path in (f"/ws/jobs/{job.pk}/", f"/ws/builds/{private_build.pk}/"):
            ws, connected, _ = await connect(path, alice)
            assert connected
            await ws.disconnect()

    run(scenario())


def test_all_builds_socket_never_gives_anonymous_a_private_frame(make_build, private_build, alice):
    public_job = make_build().jobs.get()
    private_job = private_build.jobs.get()

    async def scenario():
        anonymous, _, _ = await connect("/ws/builds/")
        staff, _, _ = await connect("/ws/builds/", alice)
        await database_sync_to_async(tasks.apply_job_state)(private_job.pk, 1, "started", AT)
        await database_sync_to_async(tasks.apply_job_state)(public_job.pk, 1, "started", AT)
        seen = await frames_until(anonymous, lambda f: f.get("build_id") == public_job.build_id)
        assert all(f["type"] == "build.state" and f["private"] is False for f in seen)
        assert private_build.pk not in {f["build_id"] for f in seen}
        assert await anonymous.receive_nothing(timeout=0.3)
        staff_seen = await frames_until(staff, lambda f: f.get("build_id") == public_job.build_id)
        assert private_build.pk in {f["build_id"] for f in staff_seen}
        assert {f["type"] for f in staff_seen} == {"build.state"}
        await anonymous.disconnect()
        await staff.disconnect()

    run(scenario())


def test_build_socket_forwards_job_and_build_frames_of_that_build_only(make_build):
    build = make_build(jobs=2)
    other = make_build().jobs.get()
    first = build.jobs.order_by("id").first()

    async def scenario():
        ws, connected, _ = await connect(f"/ws/builds/{build.pk}/")
        assert connected
        await database_sync_to_async(tasks.apply_job_state)(other.pk, 1, "started", AT)
        await database_sync_to_async(tasks.apply_job_state)(first.pk, 1, "started", AT)
        frames = await frames_until(ws, lambda f: f["type"] == "build.state")
        assert {f.get("job_id") for f in frames if f["type"] == "job.state"} == {first.pk}
        assert frames[-1]["build_id"] == build.pk and frames[-1]["state"] == "running"
        await ws.disconnect()

    run(scenario())


def test_a_frame_type_without_handler_does_not_close_the_socket(job):
    from channels.layers import get_channel_layer

    from jobs import events

    async def scenario():
        ws, _, _ = await connect(f"/ws/jobs/{job.pk}/")
        await ws.receive_json_from(timeout=5)
        await get_channel_layer().group_send(events.job_group(job.pk), {"type": "something.new", "x": 1})
        await asyncio.sleep(0.2)
        await database_sync_to_async(store)(job, 0)
        frame = (await frames_until(ws, lambda f: f["type"] == "log.parts"))[-1]
        assert frame["parts"][0]["number"] == 0
        await ws.disconnect()

    run(scenario())


def test_a_frame_on_a_viewer_s_queue_is_sent_on_the_loop_s_next_turn(job):
    """The consumers read one queue (buildboard/lib/channel_layer.py's InboxConsumer): a frame this process
    hands to a job's viewers is written to their sockets on the next loop turn, not three turns later."""
    from channels.layers import get_channel_layer

    from jobs import events

    async def scenario():
        ws, _, _ = await connect(f"/ws/jobs/{job.pk}/")
        await ws.receive_json_from(timeout=5)  # job.state
        get_channel_layer().group_send_here(events.job_group(job.pk), {"type": "log.parts", "job_id": job.pk,
                                                                       "parts": [{"number": 0}]})
        await asyncio.sleep(0)
        sent = ws.output_queue.get_nowait()
        assert json.loads(sent["text"])["parts"] == [{"number": 0}]
        await ws.disconnect()

    run(scenario())


def test_a_closed_socket_leaves_no_channel_or_group_membership_behind(job):
    from channels.layers import get_channel_layer

    from jobs import events

    async def scenario():
        layer = get_channel_layer()._get_layer()
        before = set(layer.channels)
        ws, _, _ = await connect(f"/ws/jobs/{job.pk}/")
        await ws.receive_json_from(timeout=5)
        [channel] = set(layer.channels) - before
        group = layer._get_group_channel_name(events.job_group(job.pk))
        assert channel in layer.groups[group]
        await ws.disconnect()
        return channel in layer.channels, channel in layer.groups.get(group, ())

    assert run(scenario()) == (False, False)


def job_socket_scope(job) -> dict:
    """The scope the router gives a job page's consumer, for calling it with a receive or send of our own."""
    return {"type": "websocket", "path": f"/ws/jobs/{job.pk}/", "query_string": b"", "headers": [],
            "subprotocols": [], "user": AnonymousUser(), "url_route": {"kwargs": {"job_id": job.pk}}}


def test_a_socket_whose_receive_fails_ends_its_consumer_with_that_error(job):
    from jobs.consumers import JobConsumer

    async def scenario():
        async def receive():
            raise OSError("the connection broke")

        with pytest.raises(OSError, match="the connection broke"):
            await asyncio.wait_for(JobConsumer.as_asgi()(job_socket_scope(job), receive, asyncio.Queue().put), 5)

    run(scenario())


def test_a_viewer_gone_before_its_frame_was_sent_still_leaves_the_job_s_group(job):
    """A tab closed while a log streams: sending the next frame fails (uvicorn raises ClientDisconnected)
    before the consumer reads its disconnect. It must still leave the job's group, or the process would go on
    listening for the job, and the log POST building frames for it, with nobody watching."""
    from channels.layers import get_channel_layer
    from uvicorn.protocols.utils import ClientDisconnected

    from jobs import events
    from jobs.consumers import JobConsumer

    async def scenario():
        layer = get_channel_layer()._get_layer()
        group = layer._get_group_channel_name(events.job_group(job.pk))
        inputs, first_frame, gone = asyncio.Queue(), asyncio.Event(), False

        async def send(message):
            if message["type"] == "websocket.send":
                if gone:
                    raise ClientDisconnected
                first_frame.set()

        consumer = asyncio.ensure_future(JobConsumer.as_asgi()(job_socket_scope(job), inputs.get, send))
        inputs.put_nowait({"type": "websocket.connect"})
        await asyncio.wait_for(first_frame.wait(), 5)  # joined, and job.state sent
        members = set(layer.groups[group])
        gone = True
        layer.group_send_here(events.job_group(job.pk), {"type": "log.parts", "job_id": job.pk, "parts": []})
        inputs.put_nowait({"type": "websocket.disconnect", "code": 1006})
        with pytest.raises(ClientDisconnected):
            await asyncio.wait_for(consumer, 5)
        return len(members), group in layer.groups

    assert run(scenario()) == (1, False)
