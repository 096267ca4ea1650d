"""Live status page: the websocket doorbell carries the page's sequence, and an already-open page in a
real browser changes without reload when staff post an update in another browser."""

import json
import re

import httpx
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator

from buildboard.asgi import application
from incidents import services
from incidents.models import Component, StatusPageState

from .browser import relay_websocket
from .conftest import wait_until


@pytest.mark.django_db(transaction=True)
def test_websocket_greets_with_the_current_sequence_then_forwards_changes(alice):
    component = Component.objects.create(name="Linux builds")

    # channels.testing needs daphne; asgiref's communicator speaks the same ASGI messages.
    scope = {"type": "websocket", "path": "/ws/status/", "query_string": b"", "subprotocols": [],
             "headers": [(b"host", b"localhost"), (b"origin", b"http://localhost:8000")]}
    communicator = ApplicationCommunicator(application, scope)

    async def receive_frame() -> dict:
        message = await communicator.receive_output(5)
        assert message["type"] == "websocket.send", message
        return json.loads(message["text"])

    async def scenario() -> tuple[dict, dict]:
        await communicator.send_input({"type": "websocket.connect"})
        assert (await communicator.receive_output(5))["type"] == "websocket.accept"
        hello = await receive_frame()
        # Commits, then rings the doorbell.
        await sync_to_async(services.component_status_set)(component=component, status="major_outage", by=alice)
        frame = await receive_frame()
        await communicator.send_input({"type": "websocket.disconnect", "code": 1000})
        await communicator.wait(5)
        return hello, frame

    hello, frame = async_to_sync(scenario)()
    current = StatusPageState.current().seq
    assert hello["type"] == frame["type"] == "status.changed"
    assert hello["seq"] == current - 1 and frame["seq"] == current


@pytest.mark.browser
def test_open_public_page_changes_when_staff_post_an_update(asgi_server, page, browser, alice):
    linux = Component.objects.create(name="Linux builds")
    incident = services.incident_open(name="Slow Linux builds", status="investigating", impact="minor",
                                      message="Builds start late.", component_statuses={linux: "degraded_performance"},
                                      notify=False, created_by=alice)
    frames: list[str] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: frames.append(payload)))
    page.goto(f"{asgi_server}/status/")
    assert page.locator("#banner-title").inner_text() == "Minor Service Outage"
    # Playwright delivers events only inside its own calls, so the wait goes through one.
    wait_until(lambda: page.wait_for_timeout(50) or frames, timeout=30)  # the socket is open and greeted us
    page.evaluate("window.notReloaded = true")

    staff = browser.new_context().new_page()
    staff.goto(f"{asgi_server}/login/?next=/status/manage/incidents/{incident.code}/")
    staff.fill("#id_username", "alice")
    staff.fill("#id_password", "alice-password")
    staff.click("button[type=submit]")
    staff.wait_for_url(f"**/status/manage/incidents/{incident.code}/")
    staff.select_option("#id_status", "resolved")
    staff.fill("#id_message", "Capacity is **back** to normal.")
    staff.select_option(f"#id_component-{linux.code}", "operational")
    staff.click("#incident-update-form button[type=submit]")
    staff.wait_for_url(f"**/status/manage/incidents/{incident.code}/")
    staff.context.close()

    # Polled from here: the page's CSP forbids the eval that page.wait_for_function would need.
    wait_until(lambda: page.locator("#banner-title").inner_text() == "All Systems Operational", timeout=30)
    assert page.evaluate("window.notReloaded") is True
    assert "Capacity is back to normal." in page.locator("#status-live").inner_text()
    assert page.locator("#status-announce").inner_text() == "Updated: All Systems Operational"
    assert len(frames) >= 2
    assert page.js_errors == []


@pytest.mark.browser
def test_uptime_days_show_their_detail_on_keyboard_focus(asgi_server, page, alice):
    linux = Component.objects.create(name="Linux builds")
    services.incident_open(name="Today's trouble", status="investigating", impact="minor", message="m",
                           component_statuses={linux: "partial_outage"}, notify=False, created_by=alice)
    page.goto(f"{asgi_server}/status/")
    today = page.locator(".uptime-bar .day").last
    detail_shown = "el => getComputedStyle(el.querySelector('.day-detail')).clipPath === 'none'"
    assert not today.evaluate(detail_shown)
    today.focus()
    assert today.evaluate(detail_shown)
    assert "Today's trouble" in today.locator(".day-detail").inner_text()
    page.keyboard.press("ArrowLeft")
    yesterday = page.locator(".uptime-bar .day").nth(88)
    assert yesterday.evaluate("el => el === document.activeElement")
    assert yesterday.get_attribute("tabindex") == "0" and today.get_attribute("tabindex") == "-1"
    assert page.js_errors == []


def _status_fragment(url: str) -> bool:
    return "fragment=1" in url


@pytest.mark.browser
def test_a_sequence_that_arrives_while_a_refetch_runs_is_fetched_when_it_ends(asgi_server, page, alice):
    """The first refetch is held (its response taken from the server, then kept back) until a second change's
    frame has arrived and the page's debounce timer has run on a controlled clock; when the held response
    is delivered, the page is one change behind and must fetch again on its own."""
    linux = Component.objects.create(name="Linux builds")
    page.clock.install()
    page.goto(f"{asgi_server}/status/")
    delivered: list[dict] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda payload: delivered.append(json.loads(payload))))
    page.reload()
    wait_until(lambda: page.wait_for_timeout(50) or delivered)  # greeted: the socket is open

    held: list = []
    fragments: list[str] = []

    def hold_first(route):
        fragments.append(route.request.url)
        if not held:
            held.append((route, route.fetch()))  # the page as it is now, delivered later
        else:
            route.continue_()

    page.route(_status_fragment, hold_first)
    services.component_status_set(component=linux, status="major_outage", by=alice)
    first = StatusPageState.current().seq
    wait_until(lambda: page.clock.run_for(200) or held)  # the refetch for `first` is in flight
    route, response = held[0]
    assert int(response.headers["x-status-seq"]) == first

    services.component_status_set(component=linux, status="degraded_performance", by=alice)
    second = StatusPageState.current().seq
    wait_until(lambda: page.wait_for_timeout(50) or any(f.get("seq") == second for f in delivered))
    page.clock.run_for(2000)  # every timer the frame started has run, with the refetch still in flight
    assert len(fragments) == 1

    route.fulfill(response=response)
    live = page.locator("#status-live")
    wait_until(lambda: page.clock.run_for(100) or live.get_attribute("data-seq") == str(second), timeout=30)
    assert len(fragments) == 2
    truth = httpx.get(f"{asgi_server}/status/").text
    title = page.locator("#banner-title").inner_text()
    assert title and f">{title}<" in truth
    assert page.js_errors == []


@pytest.mark.browser
def test_status_page_reconnects_after_the_socket_drops_and_catches_up(asgi_server, page, alice):
    """A change whose frame never reaches the page (held back by the route), then the socket drops: the
    page reconnects with backoff and the greeting's sequence brings it up to date."""
    linux = Component.objects.create(name="Linux builds")
    sockets, delivered, dropped = relay_websocket(page, re.compile(r"/ws/status/$"))
    page.goto(f"{asgi_server}/status/")
    wait_until(lambda: page.wait_for_timeout(50) or delivered)
    live = page.locator("#status-live")
    before = live.get_attribute("data-seq")

    dropped.append("hold")  # from now on, frames from the server stop at the route
    services.component_status_set(component=linux, status="major_outage", by=alice)
    wait_until(lambda: page.wait_for_timeout(50) or len(dropped) > 1)
    assert live.get_attribute("data-seq") == before  # the page has not heard of it

    dropped.clear()
    sockets[0].close(code=1012, reason="restarting")
    seq = str(StatusPageState.current().seq)
    wait_until(lambda: page.wait_for_timeout(50) or live.get_attribute("data-seq") == seq, timeout=30)
    assert len(sockets) == 2
    title = page.locator("#banner-title").inner_text()
    assert title != "All Systems Operational" and f">{title}<" in httpx.get(f"{asgi_server}/status/").text
    assert page.js_errors == []
