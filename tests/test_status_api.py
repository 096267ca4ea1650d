"""The public /api/v2 JSON: Statuspage's field names, values and shapes, drafts kept out, CORS, caching."""

import re
from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from incidents import services
from incidents.models import Component, ComponentGroup, Incident

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """alice and bob log in with force_login here; PBKDF2's million rounds only slow the suite."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


ID = re.compile(r"^[0-9a-z]{12}$")
ENDPOINTS = ["summary.json", "status.json", "components.json", "incidents.json", "incidents/unresolved.json",
             "scheduled-maintenances.json", "scheduled-maintenances/upcoming.json",
             "scheduled-maintenances/active.json"]
PAGE_KEYS = {"id", "name", "url", "time_zone", "updated_at"}
COMPONENT_KEYS = {"id", "name", "status", "created_at", "updated_at", "position", "description", "showcase",
                  "start_date", "group_id", "page_id", "group", "only_show_if_degraded"}
INCIDENT_KEYS = {"id", "name", "status", "created_at", "updated_at", "monitoring_at", "resolved_at", "impact",
                 "shortlink", "started_at", "page_id", "incident_updates", "components"}
UPDATE_KEYS = {"id", "status", "body", "incident_id", "created_at", "updated_at", "display_at",
               "affected_components", "deliver_notifications", "custom_tweet", "tweet_id"}


def is_iso(value: str) -> bool:
    parsed = datetime.fromisoformat(value)
    return parsed.tzinfo is not None and ("+" in value[10:] or value.endswith("Z"))


@pytest.fixture
def world(alice):
    builds = ComponentGroup.objects.create(name="Builds", position=1)
    linux = Component.objects.create(name="Linux builds", group=builds, position=1, queues="builds.linux")
    mac = Component.objects.create(name="macOS builds", group=builds, position=2, queues="builds.mac")
    web = Component.objects.create(name="Website", position=0, description="The web app")
    incident = services.incident_open(name="Slow Linux builds", status="investigating", impact="minor",
                                      message="Builds start late.", component_statuses={linux: "degraded_performance"},
                                      notify=False, created_by=alice)
    services.incident_update_post(incident=incident, status="identified", message="A bad image.",
                                  component_statuses={linux: "partial_outage"}, notify=False, created_by=alice)
    old = services.incident_open(name="Old outage", status="investigating", impact="major", message="Down.",
                                 component_statuses={web: "major_outage"}, notify=False, created_by=alice,
                                 display_at=timezone.now() - timedelta(days=3))
    services.incident_update_post(incident=old, status="resolved", message="Fixed.",
                                  component_statuses={web: "operational"}, notify=False, created_by=alice,
                                  display_at=timezone.now() - timedelta(days=3) + timedelta(hours=1))
    draft = services.incident_draft_from_alert(title="Draft from an alert", message="Queue backing up",
                                               queues=["builds.mac"])
    now = timezone.now()
    upcoming = services.maintenance_schedule(name="Database upgrade", scheduled_for=now + timedelta(days=1),
                                             scheduled_until=now + timedelta(days=1, hours=2), message="Planned.",
                                             components=[web], auto_transition=True, notify=False, created_by=alice)
    active = services.maintenance_schedule(name="Mac fleet swap", scheduled_for=now - timedelta(minutes=5),
                                           scheduled_until=now + timedelta(hours=1), message="Swapping.",
                                           components=[mac], auto_transition=True, notify=False, created_by=alice)
    services.maintenance_transition_due()
    return {"linux": linux, "mac": mac, "web": web, "group": builds, "incident": incident, "old": old,
            "draft": draft, "upcoming": upcoming, "active": active}


def get(client, endpoint):
    response = client.get(f"/api/v2/{endpoint}")
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/json"
    assert response["Access-Control-Allow-Origin"] == "*"
    return response.json()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_every_endpoint_has_the_page_object_and_cors(client, world, endpoint):
    body = get(client, endpoint)
    assert set(body["page"]) == PAGE_KEYS
    assert body["page"]["time_zone"] == "Etc/UTC" and is_iso(body["page"]["updated_at"])
    assert body["page"]["url"].endswith("/status/")


def test_summary_matches_statuspage_shapes(client, world):
    body = get(client, "summary.json")
    assert set(body) == {"page", "components", "incidents", "scheduled_maintenances", "status"}
    assert body["status"] == {"indicator": "major", "description": "Partial System Outage"}

    components = body["components"]
    assert [c["name"] for c in components] == ["Website", "Builds", "Linux builds", "macOS builds"]
    for c in components:
        assert COMPONENT_KEYS <= set(c) and ID.match(c["id"]) and is_iso(c["created_at"])
        assert c["page_id"] == body["page"]["id"]
    group = components[1]
    assert group["group"] is True and group["components"] == [world["linux"].code, world["mac"].code]
    assert group["status"] == "partial_outage"  # its worst member
    linux = components[2]
    assert linux["group"] is False and linux["group_id"] == group["id"]
    assert linux["status"] == "partial_outage" and linux["showcase"] is True
    assert components[0]["description"] == "The web app" and components[0]["group_id"] is None
    assert components[3]["status"] == "under_maintenance"

    [incident] = body["incidents"]  # unresolved and published only: no draft, no resolved one
    assert set(incident) == INCIDENT_KEYS
    assert incident["id"] == world["incident"].code and incident["status"] == "identified"
    assert incident["impact"] == "minor" and incident["shortlink"].endswith(f"/status/incidents/{incident['id']}/")
    assert incident["monitoring_at"] is None and incident["resolved_at"] is None and is_iso(incident["started_at"])
    newest, first = incident["incident_updates"]
    assert set(newest) == UPDATE_KEYS and newest["incident_id"] == incident["id"]
    assert (newest["status"], newest["body"]) == ("identified", "A bad image.")
    assert newest["affected_components"] == [{"code": world["linux"].code, "name": "Linux builds",
                                              "old_status": "degraded_performance", "new_status": "partial_outage"}]
    assert first["affected_components"][0]["old_status"] == "operational"
    assert [c["id"] for c in incident["components"]] == [world["linux"].code]

    names = [m["name"] for m in body["scheduled_maintenances"]]
    assert names == ["Database upgrade", "Mac fleet swap"]
    for m in body["scheduled_maintenances"]:
        assert is_iso(m["scheduled_for"]) and is_iso(m["scheduled_until"]) and m["impact"] == "maintenance"
        assert INCIDENT_KEYS <= set(m)


def test_status_json_is_the_indicator_alone(client, world):
    assert get(client, "status.json")["status"] == {"indicator": "major", "description": "Partial System Outage"}


def test_indicator_is_none_when_all_is_well(client, db):
    Component.objects.create(name="Website")
    assert get(client, "status.json")["status"] == {"indicator": "none", "description": "All Systems Operational"}


def test_incidents_lists_published_newest_first_and_unresolved_only_open_ones(client, world):
    everything = get(client, "incidents.json")["incidents"]
    assert [i["name"] for i in everything] == ["Slow Linux builds", "Old outage"]
    resolved = everything[1]
    assert resolved["status"] == "resolved" and is_iso(resolved["resolved_at"])
    assert [i["name"] for i in get(client, "incidents/unresolved.json")["incidents"]] == ["Slow Linux builds"]
    assert "Draft from an alert" not in str(everything)


def test_maintenance_endpoints_split_upcoming_and_active(client, world):
    assert [m["name"] for m in get(client, "scheduled-maintenances/upcoming.json")["scheduled_maintenances"]] == [
        "Database upgrade"]
    [active] = get(client, "scheduled-maintenances/active.json")["scheduled_maintenances"]
    assert active["name"] == "Mac fleet swap" and active["status"] == "in_progress"
    assert active["incident_updates"][0]["status"] == "in_progress"
    everything = get(client, "scheduled-maintenances.json")["scheduled_maintenances"]
    assert {m["name"] for m in everything} == {"Database upgrade", "Mac fleet swap"}


def test_components_json_lists_groups_and_components(client, world):
    components = get(client, "components.json")["components"]
    assert sum(c["group"] for c in components) == 1 and len(components) == 4


def test_json_is_cached_and_invalidated_by_every_change(client, world, alice, django_assert_max_num_queries):
    first = get(client, "summary.json")
    with django_assert_max_num_queries(1):  # the state row; the body comes from the cache
        assert get(client, "summary.json") == first
    services.component_status_set(component=world["web"], status="major_outage", by=alice)
    after = get(client, "summary.json")
    assert after["status"]["indicator"] == "critical"
    assert after["page"]["updated_at"] > first["page"]["updated_at"]
    services.incident_update_post(incident=world["incident"], status="resolved", message="All good.",
                                  component_statuses={}, notify=False, created_by=alice)
    assert get(client, "incidents/unresolved.json")["incidents"] == []


def test_publishing_a_draft_shows_it(client, world, alice):
    assert world["draft"].code not in str(get(client, "incidents.json"))
    client.force_login(alice)
    response = client.post(f"/status/manage/incidents/{world['draft'].code}/", {
        "name": "Mac builds queue up", "status": "investigating", "impact": "minor", "message": "Looking into it.",
        f"component-{world['mac'].code}": "degraded_performance"})
    assert response.status_code == 302
    client.logout()
    [published] = [i for i in get(client, "incidents.json")["incidents"] if i["id"] == world["draft"].code]
    assert published["name"] == "Mac builds queue up"
    assert published["incident_updates"][0]["body"] == "Looking into it."
    assert Incident.objects.get(pk=world["draft"].pk).published_at is not None


def test_only_get_is_allowed(client, db):
    assert client.post("/api/v2/summary.json").status_code == 405
