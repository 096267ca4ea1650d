"""Fleet and alert pages: staff only, what they show, and the staff controls behind them (POST + CSRF)."""

import json
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from fleet import alerts
from fleet.models import Alert, AlertRule, AlertState, QueueSettings, Worker

pytestmark = pytest.mark.django_db

BEAT = {"version": "v2.5.0", "backend": "docker", "host": "ip-10-0-0-1", "queue": "builds.linux",
        "pool_size": 4, "busy": 3, "state": "in_service"}


def beat(client, auth, name, **changes):
    response = client.post(f"/api/v1/workers/{name}/heartbeat", json.dumps({**BEAT, **changes}),
                           content_type="application/json", headers=auth)
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.parametrize("url", ["/fleet/", "/fleet/live", "/alerts/", "/alerts/rules/"])
def test_pages_are_for_staff_only(client, bob, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/login/")
    client.force_login(bob)
    assert client.get(url).status_code == 403


@pytest.mark.parametrize(("url", "body"), [
    ("/fleet/queue", {"queue": "builds.linux", "action": "drain"}),
    ("/fleet/worker-drain", {"worker": "w1", "drain": "1"}),
])
def test_staff_controls_refuse_non_staff(client, bob, url, body):
    client.force_login(bob)
    assert client.post(url, body).status_code == 403
    assert not QueueSettings.objects.filter(drain=True).exists()


def test_fleet_page_shows_versions_capacity_silent_and_stuck_instances(client, auth, staff):
    beat(client, auth, "w-old-1")
    beat(client, auth, "w-old-2", busy=4)
    beat(client, auth, "w-new-1", version="v2.6.2", state="starting", busy=0,
         errors=[{"at": timezone.now().isoformat(), "message": "manifest for travisci/worker:v2.6.2 not found"}])
    Worker.objects.filter(name="w-new-1").update(state_since=timezone.now() - timedelta(minutes=30))
    Worker.objects.filter(name="w-old-2").update(last_seen_at=timezone.now() - timedelta(minutes=5))
    page = staff.get("/fleet/").content.decode()
    assert "builds.linux" in page
    assert "3 busy / 4 slots in service" in page  # the silent instance no longer counts
    assert "w-old-2</strong> (v2.5.0) silent" in page
    assert "w-new-1</strong> (v2.6.2) stuck starting" in page
    assert "manifest for travisci/worker:&lt;tag&gt; not found" in page
    assert 'data-ws-path="/ws/fleet/"' in page and "js/fleet.js" in page
    assert staff.get("/fleet/live").content.decode().count("<section") >= 2  # the fragment, without the frame


def test_staff_set_desired_version_and_capacity_and_workers_learn_it(client, auth, staff):
    beat(client, auth, "w1")
    response = staff.post("/fleet/queue", {"queue": "builds.linux", "action": "settings",
                                           "desired_version": "v2.5.0", "expected_capacity": "12"})
    assert response.status_code == 302
    settings = QueueSettings.objects.get(queue="builds.linux")
    assert (settings.desired_version, settings.expected_capacity) == ("v2.5.0", 12)
    assert settings.desired_version_set_at is not None and settings.updated_by.username == "alice"
    assert beat(client, auth, "w1") == {"desired_version": "v2.5.0", "drain": False}
    page = staff.get("/fleet/").content.decode()
    assert "1 of 1</strong> in-service instances run it" in page


def test_bad_settings_are_refused_with_a_message(staff):
    response = staff.post("/fleet/queue", {"queue": "builds.linux", "action": "settings", "desired_version": "v1",
                                           "expected_capacity": "lots"}, follow=True)
    assert "Expected capacity must be a whole number" in response.content.decode()
    assert not QueueSettings.objects.exists()


def test_drain_controls_reach_the_workers(client, auth, staff):
    beat(client, auth, "w-old")
    beat(client, auth, "w-new", version="v2.6.2")
    staff.post("/fleet/queue", {"queue": "builds.linux", "action": "settings", "desired_version": "v2.6.2",
                                "expected_capacity": ""})
    staff.post("/fleet/queue", {"queue": "builds.linux", "action": "drain_others"})
    assert beat(client, auth, "w-old")["drain"] is True
    assert beat(client, auth, "w-new", version="v2.6.2")["drain"] is False
    staff.post("/fleet/worker-drain", {"worker": "w-old", "drain": "0"})
    assert beat(client, auth, "w-old")["drain"] is False
    staff.post("/fleet/queue", {"queue": "builds.linux", "action": "drain"})
    assert beat(client, auth, "w-new", version="v2.6.2")["drain"] is True


def test_staff_forms_need_the_csrf_token(alice):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(alice)
    assert strict.post("/fleet/queue", {"queue": "builds.linux", "action": "drain"}).status_code == 403
    page = strict.get("/fleet/")
    token = page.cookies["csrftoken"].value
    response = strict.post("/fleet/queue", {"queue": "builds.linux", "action": "drain",
                                            "csrfmiddlewaretoken": token})
    assert response.status_code == 302 and QueueSettings.objects.get().drain


def _alert(**fields) -> Alert:
    defaults = {"rule": "stuck_starting", "subject": "builds.linux", "title": "2 instances stuck starting",
                "summary": "s", "evidence": {"queue": "builds.linux", "count": 2, "queues": ["builds.linux"],
                                             "instances": [{"name": "w<script>", "version": "v2.5.0"}]}}
    return Alert.objects.create(**{**defaults, **fields})


def test_alerts_page_lists_open_alerts_and_history(staff):
    _alert()
    _alert(rule="capacity_low", state=AlertState.RESOLVED, title="old one", resolved_at=timezone.now())
    page = staff.get("/alerts/").content.decode()
    assert "2 instances stuck starting" in page and "old one" in page and "Acknowledge" in page
    filtered = staff.get("/alerts/?state=resolved").content.decode()
    assert "old one" in filtered


def test_alert_detail_shows_escaped_evidence(staff):
    alert = _alert()
    page = staff.get(f"/alerts/{alert.pk}/").content.decode()
    assert "w&lt;script&gt;" in page and "w<script>" not in page
    assert "Draft incident" in page


def test_acknowledge_moves_firing_to_acknowledged_once(staff, alice):
    alert = _alert()
    assert staff.post(f"/alerts/{alert.pk}/acknowledge").status_code == 302
    alert.refresh_from_db()
    assert alert.state == AlertState.ACKNOWLEDGED and alert.acknowledged_by == alice
    response = staff.post(f"/alerts/{alert.pk}/acknowledge", follow=True)
    assert "only a firing alert can be acknowledged" in response.content.decode()


def test_staff_edit_thresholds_and_bad_values_are_refused(staff):
    body = {"kind": "queued_too_long", "enabled": "on", "minutes": "5", "min_jobs": "2", "clear_minutes": "1"}
    assert staff.post("/alerts/rules/", body).status_code == 302
    assert alerts.rule_params("queued_too_long") == {"minutes": 5, "min_jobs": 2, "clear_minutes": 1}
    response = staff.post("/alerts/rules/", {**body, "minutes": "-3"})
    assert response.status_code == 400 and "must be at least 1" in response.content.decode()
    assert alerts.rule_params("queued_too_long")["minutes"] == 5
    staff.post("/alerts/rules/", {k: v for k, v in body.items() if k != "enabled"})
    assert not AlertRule.objects.get(kind="queued_too_long").enabled
