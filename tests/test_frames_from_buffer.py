"""Log frames as soon as the part is durable in the job's Redis buffer, and readers that see them.

The drain is held off in these tests (someone else owns the job's list), so what they see comes from
the buffer, before any Celery task or database commit."""

import json
import time

import pytest

from jobs import events, ingest, logread, tasks
from jobs.models import LogPart
from tests.layer import listen, receive
from tests.test_consumers import connect, frames_until, run

pytestmark = pytest.mark.django_db(transaction=True)


class Listener:
    """The log frames that reach a consumer of one job's group, through the real channel layer."""

    def __init__(self, job):
        self.channel = listen(events.job_group(job.pk))

    def frames(self, count: int, timeout: float = 5.0) -> list[dict]:
        """The next `count` log frames, or those that came within `timeout` seconds."""
        got: list[dict] = []
        deadline = time.monotonic() + timeout
        while len(got) < count:
            try:
                frame = receive(self.channel, max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                break
            if frame["type"] == "log.parts":
                got.append(frame)
        return got


def post_log(client, auth, job, *parts, attempt=None):
    body = {"parts": [{"number": n, "content": c} for n, c in parts]}
    if attempt:
        body["attempt"] = attempt
    return client.post(f"/api/v1/jobs/{job.pk}/log", json.dumps(body), content_type="application/json", **{
        "HTTP_AUTHORIZATION": auth["Authorization"]})


def held_off(job) -> str:
    """Own the job's list as a stalled drainer would: the API schedules no flush."""
    token = ingest.claim(job.pk)
    assert token
    return token


def test_parts_are_announced_from_the_buffer_and_read_back_before_they_are_stored(client, auth, job, monkeypatch):
    token = held_off(job)
    listener = Listener(job)
    assert post_log(client, auth, job, (0, "one\n"), (1, "two\n"), (1, "two again\n")).status_code == 202
    assert post_log(client, auth, job, (2, "three\n")).status_code == 202
    assert not LogPart.objects.exists()  # nothing is stored yet

    announced = listener.frames(2)
    assert [[(p["number"], p["content"]) for p in f["parts"]] for f in announced] == [
        [(0, "one\n"), (1, "two\n")], [(2, "three\n")]]
    assert all(f["persisted_through"] == -1 and f["attempt"] == 1 for f in announced)

    # Every reader sees what the frames promised: the API (paged), log.txt and the websocket replay.
    page = client.get(f"/api/v1/jobs/{job.pk}/log?after=-1&limit=2").json()
    assert [(p["number"], p["content"]) for p in page["parts"]] == [(0, "one\n"), (1, "two\n")]
    assert page["more"] is True and page["persisted_through"] == -1
    rest = client.get(f"/api/v1/jobs/{job.pk}/log?after=1").json()
    assert [p["number"] for p in rest["parts"]] == [2] and rest["more"] is False
    assert client.get(f"/jobs/{job.pk}/log.txt").getvalue() == b"one\ntwo\nthree\n"

    async def replay():
        socket, connected, _ = await connect(f"/ws/jobs/{job.pk}/?after=0")
        assert connected
        got = await frames_until(socket, lambda f: f["type"] == "log.parts")
        await socket.disconnect()
        return got

    backlog = [f for f in run(replay()) if f["type"] == "log.parts"]
    assert [p["number"] for f in backlog for p in f["parts"]] == [1, 2]

    # The drain stores them (announced at the very time the frames said) and announces nothing more.
    assert ingest.drain(job.pk, token, tasks.store_log_parts, tasks.set_aside_log_parts) == ingest.DONE
    stored = list(LogPart.objects.order_by("number").values_list("number", "content", "created_at"))
    assert [(n, c) for n, c, _ in stored] == [(0, "one\n"), (1, "two\n"), (2, "three\n")]
    assert [at.isoformat() for _, _, at in stored] == [p["at"] for f in announced for p in f["parts"]]
    assert listener.frames(1, timeout=1.0) == []
    job.refresh_from_db()
    assert job.log_persisted_through == 2
    assert [p["number"] for p in logread.read_parts(job)] == [0, 1, 2]


def test_a_part_near_the_log_cap_is_announced_only_once_stored(client, auth, job, settings, monkeypatch):
    settings.LOG_MAX_BYTES = 10
    token = held_off(job)
    listener = Listener(job)
    assert post_log(client, auth, job, (0, "12345\n")).status_code == 202  # 6 of 10 bytes: certain to fit
    assert post_log(client, auth, job, (1, "1234\n")).status_code == 202  # 11 bytes accepted: it may not
    assert [[p["number"] for p in f["parts"]] for f in listener.frames(2, timeout=1.0)] == [[0]]
    assert [p["number"] for p in logread.read_parts(job)] == [0]  # readers show only what was announced

    ingest.drain(job.pk, token, tasks.store_log_parts, tasks.set_aside_log_parts)
    assert listener.frames(1, timeout=1.0) == []  # part 1 did not fit: it was never promised, nor stored
    job.refresh_from_db()
    assert job.log_truncated and [p["number"] for p in logread.read_parts(job)] == [0]


def test_without_announcement_the_drain_announces_after_commit(job, django_capture_on_commit_callbacks, monkeypatch):
    token = ingest.buffer_parts(job.pk, 1, json.dumps({"parts": [{"number": 0, "content": "a"}]}).encode())
    listener = Listener(job)
    assert logread.read_parts(job) == []  # not announced: readers wait for the database
    with django_capture_on_commit_callbacks(execute=True):
        ingest.drain(job.pk, token, tasks.store_log_parts, tasks.set_aside_log_parts)
    assert [[p["number"] for p in f["parts"]] for f in listener.frames(1)] == [[0]]


def test_readers_merge_stored_and_buffered_parts_in_order_without_duplicates(job):
    tasks.ingest_log_parts(job.pk, 1, [{"number": n, "content": f"db{n}"} for n in (0, 1, 3, 5)])
    held_off(job)
    body = json.dumps({"parts": [{"number": n, "content": f"buf{n}", "announced_us": None} for n in (2, 3, 4, 6)]})
    ingest.accept_parts(job.pk, 1, body.encode(), size=16, stored_bytes=0)
    ingest.accept_parts(job.pk, 1, json.dumps({"parts": [{"number": 2, "content": "again"}]}).encode(), size=5)
    job.refresh_from_db()
    whole = [(p["number"], p["content"]) for p in logread.read_parts(job)]
    assert whole == [(0, "db0"), (1, "db1"), (2, "buf2"), (3, "db3"), (4, "buf4"), (5, "db5"), (6, "buf6")]
    assert [(p["number"], p["content"]) for p in logread.iter_parts(job, chunk=2)] == whole
    assert [p["number"] for p in logread.read_parts(job, after=1, limit=3)] == [2, 3, 4]
    assert [p["number"] for p in logread.read_parts(job, after=-1, limit=2)] == [0, 1]
    assert [p["number"] for p in logread.read_parts(job, after=4)] == [5, 6]
    assert logread.log_text(job) == "db0db1buf2db3buf4db5buf6"


def test_an_earlier_attempts_buffered_parts_are_not_read(client, auth, job):
    held_off(job)
    assert post_log(client, auth, job, (0, "first attempt\n")).status_code == 202
    job.refresh_from_db()
    assert [p["content"] for p in logread.read_parts(job, attempt=1)] == ["first attempt\n"]
    job.attempt = 2  # as a restart leaves it: the drain drops parts of attempt 1
    assert logread.read_parts(job, attempt=1) == [] and logread.read_parts(job) == []


def test_a_flush_that_cannot_be_published_is_left_to_the_sweep(caplog, settings):
    """The log POST does not wait for the flush task's publish: its parts are durable already."""
    import time

    from buildboard import celery_app
    from buildboard.lib.publish import enqueue_soon

    class Unpublishable:
        app = celery_app

        @staticmethod
        def delay(*args, **kwargs):
            raise ConnectionError("broker away")

    celery_app.conf.task_always_eager = False
    enqueue_soon(Unpublishable, 1, "token")  # does not raise
    deadline = time.monotonic() + 5
    while "the sweep will schedule its work" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "the sweep will schedule its work" in caplog.text


def test_no_frame_is_built_for_a_job_nobody_watches_and_a_viewer_who_comes_later_reads_the_part(
        client, auth, job, monkeypatch):
    """The buffer script says whether anyone listens to the job's group: with nobody, the POST builds and
    sends no frame, and a viewer who subscribes afterwards finds the part in the buffer, then gets frames."""
    from buildboard.lib import doorbell

    held_off(job)
    layer = doorbell.get_channel_layer()
    sent: list[str] = []
    group_send_here = layer.group_send_here

    def counting(group, message):  # where a frame from the POST starts, before it goes to other processes
        sent.append(group)
        group_send_here(group, message)

    monkeypatch.setattr(layer, "group_send_here", counting)
    assert post_log(client, auth, job, (0, "unwatched\n")).status_code == 202
    assert sent == []
    listener = Listener(job)
    sent.clear()
    assert [p["number"] for p in logread.read_parts(job, 1, -1, 10)] == [0]  # what the viewer's replay reads
    assert post_log(client, auth, job, (1, "watched\n")).status_code == 202
    assert [[p["number"] for p in f["parts"]] for f in listener.frames(1)] == [[1]]
    assert sent == [events.job_group(job.pk)]
