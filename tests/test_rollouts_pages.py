"""Rollouts on the fleet page and their timeline: staff start one (preflight warnings are shown before they
confirm), pause, promote and abort it with CSRF-protected forms; everyone else is refused. One real
Chromium walk through the page."""

import httpx
import pytest
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect

from fleet import rollouts, services
from fleet.models import Rollout

pytestmark = pytest.mark.django_db
BEAT = {"version": "v2.5.0", "backend": "docker", "queue": "builds.linux", "pool_size": 2, "busy": 0,
        "state": "in_service", "errors": []}


def _fleet(n: int = 3, version: str = "v2.5.0") -> None:
    for i in range(n):
        services.worker_heartbeat(name=f"w-{i}", beat={**BEAT, "version": version, "host": "", "image": ""},
                                  errors=[])


@pytest.fixture
def staff(alice) -> Client:
    c = Client(enforce_csrf_checks=True)
    c.force_login(alice)
    c.get("/fleet/")  # sets the CSRF cookie
    return c


def _post(c: Client, path: str, data: dict):
    return c.post(path, {**data, "csrfmiddlewaretoken": c.cookies["csrftoken"].value})


def test_starting_from_the_fleet_page_shows_the_preflight_warning_before_confirming(staff):
    _fleet()
    assert 'data-role="rollout-start"' in staff.get("/fleet/").content.decode()
    form = {"queue": "builds.linux", "version": "v2.6.2", "stages": "1, 50%, 100%", "soak_minutes": "10"}
    answer = _post(staff, "/fleet/rollouts/start", form)
    assert answer.status_code == 409
    html = answer.content.decode()
    assert "No instance of builds.linux has ever been in service on v2.6.2." in html
    assert 'name="confirm" value="1"' in html and not Rollout.objects.exists()
    confirmed = _post(staff, "/fleet/rollouts/start", {**form, "confirm": "1"})
    rollout = Rollout.objects.get()
    assert confirmed.status_code == 302 and confirmed["Location"] == rollout.get_absolute_url()
    assert rollout.stages == ["1", "50%", "100%"] and rollout.soak_minutes == 10
    assert rollout.created_by.username == "alice"

    page = staff.get("/fleet/").content.decode()
    assert f"Rollout #{rollout.pk}" in page and "Promote (skip soak)" in page
    assert 'data-role="rollout-start"' not in page
    assert _post(staff, f"/fleet/rollouts/{rollout.pk}/pause", {}).status_code == 302
    assert Rollout.objects.get().state == "paused"
    assert _post(staff, f"/fleet/rollouts/{rollout.pk}/abort", {"back": "timeline"})["Location"] == \
        rollout.get_absolute_url()
    rollout.refresh_from_db()
    assert rollout.state == "aborted"
    timeline = staff.get(rollout.get_absolute_url()).content.decode()
    for text in ("Paused", "Aborted", "by alice", "Stage 1 of 3: 1", "v2.5.0 → v2.6.2"):
        assert text in timeline, text


def test_page_forms_refuse_bad_input_and_missing_csrf(staff, alice):
    _fleet()
    assert _post(staff, "/fleet/rollouts/start", {"queue": "builds.linux", "version": "v2.6.2",
                                                   "stages": "50%, 10%, 100%", "confirm": "1"}).status_code == 302
    assert _post(staff, "/fleet/rollouts/start", {"queue": "builds.linux", "version": "v2.6.2",
                                                   "soak_minutes": "nan", "confirm": "1"}).status_code == 302
    assert not Rollout.objects.exists()
    messages = staff.get("/fleet/").content.decode()
    assert "stages must be increasing" in messages and "Soak must be a number of minutes." in messages
    no_csrf = Client(enforce_csrf_checks=True)
    no_csrf.force_login(alice)
    assert no_csrf.post("/fleet/rollouts/start", {"queue": "builds.linux", "version": "v9", "confirm": "1"}
                        ).status_code == 403
    assert not Rollout.objects.exists()


def test_rollout_pages_are_staff_only_and_escape_what_they_show(client, bob, alice):
    _fleet()
    rollout = rollouts.rollout_start(queue="builds.linux", version="<b>v9</b>", user=alice, confirm=True)
    assert client.get(rollout.get_absolute_url()).status_code == 302  # to the login page
    client.force_login(bob)
    assert client.get(rollout.get_absolute_url()).status_code == 403
    assert client.post(f"/fleet/rollouts/{rollout.pk}/abort").status_code == 403
    assert Rollout.objects.get().state == "running"
    client.force_login(alice)
    html = client.get(rollout.get_absolute_url()).content.decode()
    assert "<b>v9</b>" not in html and "&lt;b&gt;v9&lt;/b&gt;" in html
    assert client.post(f"/fleet/rollouts/{rollout.pk}/nope").status_code == 404


def test_the_halt_alert_links_to_the_timeline(alice, client):
    _fleet(2)
    rollout = rollouts.rollout_start(queue="builds.linux", version="v2.6.2", user=alice, confirm=True)
    error = {"at": timezone.now(), "message": "Error response from daemon: manifest for travisci/worker:v2.6.2 "
                                              "not found: manifest unknown"}
    services.worker_heartbeat(name="w-0", beat={**BEAT, "version": "v2.6.2", "state": "starting", "host": "",
                                                "image": "travisci/worker:v2.6.2"}, errors=[error])
    fired = rollouts.rollouts_check()
    rollout.refresh_from_db()
    assert rollout.state == "halted" and fired == [rollout.alert]
    client.force_login(alice)
    html = client.get(rollout.alert.get_absolute_url()).content.decode()
    assert rollout.get_absolute_url() in html
    assert "Rollout halted and rolled back" in html


@pytest.mark.browser
def test_staff_start_confirm_and_abort_a_rollout_in_a_browser(asgi_server, page, auth, alice):
    for i in range(3):
        r = httpx.post(f"{asgi_server}/api/v1/workers/w-{i}/heartbeat", headers=auth,
                       json={**BEAT, "image": "travisci/worker:v2.5.0"})
        assert r.status_code == 200, r.text
    page.goto(f"{asgi_server}/login/?next=/fleet/")
    page.fill("input[name=username]", "alice")
    page.fill("input[name=password]", "alice-password")
    page.click("button[type=submit]")
    queue = page.locator("section.fleet-queue[data-queue='builds.linux']")
    start = queue.locator("[data-role=rollout-start]")
    start.locator("input[name=version]").fill("v2.6.2")
    start.locator("input[name=soak_minutes]").fill("5")
    start.locator("button[type=submit]").click()
    expect(page.locator("[data-role=preflight-warnings]")).to_contain_text("has ever been in service on v2.6.2")
    page.get_by_role("button", name="Start the rollout anyway").click()
    expect(page.locator("[data-role=rollout-state]")).to_have_text("running")
    expect(page.locator("[data-role=rollout-timeline]")).to_contain_text("Started by alice")
    page.goto(f"{asgi_server}/fleet/")
    queue.get_by_role("button", name="Abort and roll back").click()
    expect(queue.locator("[data-role=rollout-state]")).to_have_text("aborted")
    r = httpx.post(f"{asgi_server}/api/v1/workers/w-0/heartbeat", headers=auth, json=BEAT)
    assert r.json()["desired_version"] == "v2.5.0"
    assert page.js_errors == []
