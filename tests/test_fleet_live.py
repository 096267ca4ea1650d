"""The fleet page is live: a staff-only websocket rings on heartbeats over the real Redis channel layer, and
in a real Chromium the page shows new instances and errors without a reload."""

import json
import re

import httpx
import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from django.contrib.auth.models import AnonymousUser
from django.utils import timezone
from playwright.sync_api import expect

from fleet.routing import websocket_urlpatterns

from .browser import relay_websocket
from .conftest import wait_until

APP = URLRouter(websocket_urlpatterns)
BEAT = {"version": "v2.5.0", "backend": "docker", "host": "ip-10-0-0-1", "queue": "builds.linux",
        "pool_size": 4, "busy": 1, "state": "in_service"}


def _socket(user) -> ApplicationCommunicator:
    return ApplicationCommunicator(APP, {"type": "websocket", "path": "/ws/fleet/", "query_string": b"",
                                         "headers": [], "subprotocols": [], "user": user or AnonymousUser()})


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("who", ["anonymous", "bob"])
def test_fleet_socket_refuses_non_staff(who, bob):
    async def attempt():
        socket = _socket(bob if who == "bob" else None)
        await socket.send_input({"type": "websocket.connect"})
        reply = await socket.receive_output(5)
        return reply

    reply = async_to_sync(attempt)()
    assert reply["type"] == "websocket.close" and reply["code"] == 4403


@pytest.mark.django_db(transaction=True)
def test_fleet_socket_rings_for_staff_when_a_heartbeat_changes_something(client, auth, alice):
    def heartbeat(**changes):
        response = client.post("/api/v1/workers/w1/heartbeat", json.dumps({**BEAT, **changes}),
                               content_type="application/json", headers=auth)
        assert response.status_code == 200

    async def scenario():
        socket = _socket(alice)
        await socket.send_input({"type": "websocket.connect"})
        assert (await socket.receive_output(5))["type"] == "websocket.accept"
        await _in_thread(heartbeat)
        frame = json.loads((await socket.receive_output(5))["text"])
        await _in_thread(heartbeat)  # nothing changed: no doorbell
        quiet = await socket.receive_nothing(0.5)
        await _in_thread(heartbeat, state="draining")
        changed = json.loads((await socket.receive_output(5))["text"])
        await socket.send_input({"type": "websocket.disconnect", "code": 1000})
        return frame, quiet, changed

    frame, quiet, changed = async_to_sync(scenario)()
    assert frame["type"] == "fleet.changed" and frame["worker"] == "w1" and frame["seq"] == 1
    assert quiet
    assert changed["seq"] == 2


async def _in_thread(fn, **kwargs):
    # database_sync_to_async closes the worker thread's connection afterwards; otherwise it stays checked
    # out of the pool for the rest of the session and PostgreSQL refuses to drop the test database.
    await database_sync_to_async(fn, thread_sensitive=False)(**kwargs)


@pytest.mark.browser
def test_fleet_page_shows_new_instances_and_errors_without_reload(asgi_server, page, auth, alice):
    page.goto(f"{asgi_server}/login/?next=/fleet/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-password")
    page.click("button[type=submit]")
    expect(page.locator("h1")).to_have_text("Fleet")
    expect(page.locator("#fleet-live-dot")).to_have_class("fleet-live-dot on")
    assert "No worker has sent a heartbeat yet" in page.content()

    response = httpx.post(f"{asgi_server}/api/v1/workers/w-1/heartbeat", headers=auth, json=BEAT)
    assert response.status_code == 200, response.text
    queue = page.locator("section.fleet-queue[data-queue='builds.linux']")
    expect(queue.locator("[data-role=capacity]")).to_have_text("1 busy / 4 slots in service")

    errors = [{"at": timezone.now().isoformat(),
               "message": "Error response from daemon: manifest for travisci/worker:v2.5.0 not found"}]
    httpx.post(f"{asgi_server}/api/v1/workers/w-2/heartbeat", headers=auth,
               json={**BEAT, "state": "starting", "busy": 0, "errors": errors})
    expect(queue.locator(".fleet-errors")).to_contain_text("manifest for travisci/worker:<tag> not found")
    expect(queue.locator(".fleet-versions")).to_contain_text("v2.5.0")
    assert page.js_errors == []


@pytest.mark.browser
def test_fleet_page_reconnects_after_the_socket_drops_and_catches_up(asgi_server, page, auth, alice):
    """A heartbeat whose doorbell never reaches the page (held back by the route), then the socket drops: the
    page reconnects through the shared LiveSocket and refetches its fragment on open."""
    sockets, _, dropped = relay_websocket(page, re.compile(r"/ws/fleet/$"))
    page.goto(f"{asgi_server}/login/?next=/fleet/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-password")
    page.click("button[type=submit]")
    dot = page.locator("#fleet-live-dot")
    expect(dot).to_have_class("fleet-live-dot on")
    root = page.locator("#fleet-live")
    # The socket's first open schedules a refetch; let it land before the heartbeat, or it would carry it.
    expect(root).to_have_attribute("data-refreshed-at", re.compile(r"^\d+$"))
    refreshed = root.get_attribute("data-refreshed-at")

    dropped.append("hold")  # from now on, frames from the server stop at the route
    response = httpx.post(f"{asgi_server}/api/v1/workers/w-1/heartbeat", headers=auth, json=BEAT)
    assert response.status_code == 200, response.text
    wait_until(lambda: page.wait_for_timeout(50) or len(dropped) > 1)
    assert "No worker has sent a heartbeat yet" in root.inner_text()

    dropped.clear()
    sockets[0].close(code=1012, reason="restarting")
    queue = page.locator("section.fleet-queue[data-queue='builds.linux']")
    expect(queue.locator("[data-role=capacity]")).to_have_text("1 busy / 4 slots in service", timeout=30000)
    expect(dot).to_have_class("fleet-live-dot on")
    assert len(sockets) == 2
    assert root.get_attribute("data-refreshed-at") != refreshed
    assert page.js_errors == []
