"""One live layer: every app announces through buildboard/lib/doorbell.py, after the commit, and the frames
reach channel-layer consumers on the real Redis."""

import ast
import asyncio
import threading
from pathlib import Path

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

from accounts import services as account_services
from accounts.live import access_group
from buildboard.lib import doorbell
from incidents import live as status_live
from incidents import services as incident_services
from incidents.models import Component, StatusPageState
from jobs import events, tasks
from tests.layer import listen, receive

AT = "2026-11-26T10:00:00+00:00"
APPS = ("accounts", "fleet", "incidents", "jobs")


@pytest.fixture
def rings(monkeypatch) -> list[tuple[list[str], dict]]:
    """Every doorbell ring of the test, passed through to the real channel layer."""
    calls: list[tuple[list[str], dict]] = []
    real = doorbell.ring

    def recording(groups, message):
        calls.append((list(groups), message))
        real(groups, message)

    monkeypatch.setattr(doorbell, "ring", recording)
    return calls


def test_no_app_talks_to_the_channel_layer_but_through_the_doorbell():
    """group_send and async_to_sync belong to the doorbell; the apps' consumers only join groups."""
    offenders = []
    for app in APPS:
        for path in sorted((Path(settings.BASE_DIR) / app).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                name = node.attr if isinstance(node, ast.Attribute) else node.id if isinstance(node, ast.Name) \
                    else None
                if name in ("group_send", "async_to_sync"):
                    offenders.append(f"{path.relative_to(settings.BASE_DIR)}:{node.lineno} {name}")
    assert offenders == []


def test_status_change_rings_the_doorbell_after_commit_and_reaches_a_consumer(
        alice, rings, django_capture_on_commit_callbacks):
    component = Component.objects.create(name="Linux builds")
    channel = listen(status_live.GROUP)
    rings.clear()
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        incident_services.component_status_set(component=component, status="major_outage", by=alice)
        assert rings == []  # nothing before the commit
    for callback in callbacks:
        callback()
    seq = StatusPageState.current().seq
    assert rings == [([status_live.GROUP], {"type": "status.changed", "seq": seq})]
    assert receive(channel) == {"type": "status.changed", "seq": seq}


def test_role_change_rings_the_doorbell_for_the_users_access_group(acme, bob, rings,
                                                                   django_capture_on_commit_callbacks):
    channel = listen(access_group(bob.pk))
    with django_capture_on_commit_callbacks(execute=True):
        account_services.role_grant(organization=acme, repository="", role="read", user=bob)
    assert rings == [([access_group(bob.pk)], {"type": "access.changed"})]
    assert receive(channel)["type"] == "access.changed"


def test_job_and_build_frames_ring_the_doorbell(job, rings, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        tasks.apply_job_state(job.pk, 1, "started", AT, worker="w1")
    assert [(groups, frame["type"]) for groups, frame in rings] == [
        ([events.job_group(job.pk), events.build_group(job.build_id)], "job.state"),
        ([events.build_group(job.build_id), events.ALL_GROUP], "build.state"),
    ]


def test_the_all_jobs_group_gets_build_frames_and_no_job_frames(job, django_capture_on_commit_callbacks):
    """The all-group's consumer (home and repository pages) handles build.state only. The job frame is
    announced first, so had it gone to the all-group it would be the first frame there."""
    everything = listen(events.ALL_GROUP)
    one_job = listen(events.job_group(job.pk))
    with django_capture_on_commit_callbacks(execute=True):
        tasks.apply_job_state(job.pk, 1, "started", AT, worker="w1")
    assert receive(one_job)["type"] == "job.state"
    first = receive(everything)
    assert first["type"] == "build.state" and first["build_id"] == job.build_id and first["state"] == "running"


def test_frames_to_the_same_groups_leave_in_the_order_they_were_rung_and_others_do_not_wait(monkeypatch):
    """The first frame to job-1 waits on Redis longer than the second would: the second still leaves after
    it, while a frame to job-2 rung last leaves at once. Rung from sync code (the announcer loop) and from
    code on an event loop (the worker's log POST) alike."""
    layer = get_channel_layer()
    sent: list[tuple[str, int]] = []
    changed = threading.Condition()

    async def slow_then_fast(group, message):
        if message["n"] in (1, 4):
            await asyncio.sleep(0.5)
        with changed:
            sent.append((group, message["n"]))
            changed.notify_all()

    monkeypatch.setattr(layer, "group_send", slow_then_fast)
    monkeypatch.setattr(layer, "group_send_elsewhere", slow_then_fast)
    monkeypatch.setattr(layer, "group_send_here", lambda group, message: None)
    for groups, n in ((["job-1"], 1), (["job-1"], 2), (["job-2"], 3)):  # as ring() schedules each, unwaited
        asyncio.run_coroutine_threadsafe(
            doorbell._send_all(layer.group_send, groups, {"type": "log.parts", "n": n}), doorbell._announcer_loop())
    with changed:
        assert changed.wait_for(lambda: len(sent) == 3, timeout=10)
    assert sent == [("job-2", 3), ("job-1", 1), ("job-1", 2)]

    async def on_a_loop():
        rung = [asyncio.create_task(doorbell.announce_now(["job-1"], {"type": "log.parts", "n": n})())
                for n in (4, 5)]
        await doorbell.announce_now(["job-2"], {"type": "log.parts", "n": 6})()
        assert sent[3:] == [("job-2", 6)]
        await asyncio.gather(*rung)
        assert dict(doorbell._turns[asyncio.get_running_loop()]) == {}

    asyncio.run(on_a_loop())
    assert sent[3:] == [("job-2", 6), ("job-1", 4), ("job-1", 5)]
    assert all(turns == {} for turns in doorbell._turns.values())  # nothing kept once the frames are out
