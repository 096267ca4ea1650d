"""Live status page: the websocket doorbell carries the page's sequence, and an already-open page in a
real browser changes without reload when staff post an update in another browser."""

import json

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from asgiref.testing import ApplicationCommunicator

from buildboard.asgi import application
from incidents import services
from incidents.models import Component, StatusPageState

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
