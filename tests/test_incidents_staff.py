"""The incident manager UI: who may use it, what each form does, and that every post records its author."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone

from incidents import services
from incidents.models import (
    Component,
    ComponentStatusChange,
    Incident,
    IncidentTemplate,
    Maintenance,
    StatusPageState,
)
from incidents.staff import MANAGERS_GROUP

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """alice and bob log in with force_login here; PBKDF2's million rounds only slow the suite."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def linux(db):
    return Component.objects.create(name="Linux builds", queues="builds.linux, builds.linux-arm")


@pytest.fixture
def incident(alice, linux):
    return services.incident_open(name="Slow builds", status="investigating", impact="minor", message="Looking.",
                                  component_statuses={linux: "degraded_performance"}, notify=False, created_by=alice)


@pytest.fixture
def charlie(django_user_model):
    """Not staff, but an incident manager."""
    user = django_user_model.objects.create_user("charlie", "charlie@example.com", "charlie-password")
    user.groups.add(Group.objects.create(name=MANAGERS_GROUP))
    return user


def staff_urls(incident, linux) -> list[tuple[str, dict]]:
    return [
        ("/status/manage/", {}),
        ("/status/manage/incidents/new/", {"name": "x", "status": "investigating", "impact": "minor", "message": "m"}),
        (f"/status/manage/incidents/{incident.code}/", {"status": "resolved", "message": "done"}),
        (f"/status/manage/incidents/{incident.code}/postmortem/", {"body": "# pm", "action": "publish"}),
        ("/status/manage/maintenance/new/", {"name": "m"}),
        (f"/status/manage/components/{linux.code}/", {"name": "renamed"}),
        (f"/status/manage/components/{linux.code}/status/", {"status": "major_outage"}),
        ("/status/manage/components/new/", {"name": "new"}),
        ("/status/manage/groups/new/", {"name": "g"}),
        ("/status/manage/templates/new/", {"name": "t"}),
        ("/status/manage/webhooks/new/", {"url": "http://127.0.0.1:9/hook"}),
    ]


def test_anonymous_visitors_are_sent_to_log_in_and_change_nothing(client, incident, linux):
    seq = StatusPageState.current().seq
    for url, data in staff_urls(incident, linux):
        for response in (client.get(url), client.post(url, data)):
            assert response.status_code == 302 and response["Location"].startswith("/login/?next="), url
    assert StatusPageState.current().seq == seq
    assert incident.updates.count() == 1 and Component.objects.get().name == "Linux builds"


def test_signed_in_non_staff_get_403_and_change_nothing(client, bob, incident, linux):
    client.force_login(bob)
    seq = StatusPageState.current().seq
    for url, data in staff_urls(incident, linux):
        if url.endswith("/status/"):
            assert client.post(url, data).status_code == 403, url
            continue
        assert client.get(url).status_code == 403, url
        assert client.post(url, data).status_code == 403, url
    assert StatusPageState.current().seq == seq
    assert Component.objects.get().status == "degraded_performance"


def test_incident_managers_group_members_may_post(client, charlie, incident, linux):
    client.force_login(charlie)
    assert client.get("/status/manage/").status_code == 200
    response = client.post(f"/status/manage/incidents/{incident.code}/", {
        "status": "monitoring", "message": "A fix is out.", f"component-{linux.code}": "operational"})
    assert response.status_code == 302
    update = incident.updates.first()
    assert update.created_by == charlie and update.body == "A fix is out."
    assert ComponentStatusChange.objects.filter(component=linux).last().created_by == charlie


def test_open_incident_form_sets_everything_in_one_post(client, alice, linux):
    client.force_login(alice)
    response = client.post("/status/manage/incidents/new/", {
        "name": "Logs are delayed", "status": "identified", "impact": "critical", "message": "We *know*.",
        f"component-{linux.code}": "major_outage", "notify": "on"})
    assert response.status_code == 302
    incident = Incident.objects.get()
    assert (incident.status, incident.impact, incident.created_by) == ("identified", "critical", alice)
    assert incident.is_published and list(incident.components.all()) == [linux]
    linux.refresh_from_db()
    assert linux.status == "major_outage"
    update = incident.updates.get()
    assert update.deliver_notifications and update.created_by == alice
    assert update.affected_components == [{"code": linux.code, "name": "Linux builds", "old_status": "operational",
                                           "new_status": "major_outage"}]


def test_invalid_forms_say_what_is_wrong(client, alice, incident):
    client.force_login(alice)
    response = client.post("/status/manage/incidents/new/", {"status": "exploded"})
    assert response.status_code == 400
    assert "This field is required." in response.content.decode()
    response = client.post(f"/status/manage/incidents/{incident.code}/", {"status": "resolved", "message": ""})
    assert response.status_code == 400
    response = client.post("/status/manage/maintenance/new/", {
        "name": "m", "message": "x", "scheduled_for": "2030-01-02T10:00", "scheduled_until": "2030-01-02T09:00"})
    assert response.status_code == 400 and "The end must be after the start." in response.content.decode()


def test_postmortem_preview_renders_without_publishing_then_publish(client, alice, incident):
    client.force_login(alice)
    url = f"/status/manage/incidents/{incident.code}/postmortem/"
    response = client.post(url, {"body": "## What happened\n\n- one\n- two", "action": "preview"})
    assert response.status_code == 200
    html = response.content.decode()
    assert "<h2>What happened</h2>" in html and "<li>one</li>" in html
    assert not hasattr(Incident.objects.get(pk=incident.pk), "postmortem")
    client.post(url, {"body": "## Draft heading", "action": "save"})
    incident.refresh_from_db()
    assert incident.postmortem.is_draft and incident.postmortem.updated_by == alice
    assert "Draft heading" not in client.get(incident.get_absolute_url()).content.decode()
    client.post(url, {"body": "## Final heading", "action": "publish"})
    incident.refresh_from_db()
    assert incident.postmortem.published_at is not None
    assert "<h2>Final heading</h2>" in client.get(incident.get_absolute_url()).content.decode()


def test_templates_prefill_the_open_form(client, alice, linux):
    client.force_login(alice)
    response = client.post("/status/manage/templates/new/", {
        "name": "Slow queue", "title": "Builds are slow to start", "status": "investigating", "impact": "minor",
        "body": "We are looking into slow build starts.", "components": [linux.pk]})
    assert response.status_code == 302
    template = IncidentTemplate.objects.get()
    assert template.created_by == alice
    html = client.get(f"/status/manage/incidents/new/?template={template.pk}").content.decode()
    assert 'value="Builds are slow to start"' in html and "We are looking into slow build starts." in html
    assert '<option value="operational" selected>' in html


def test_components_and_their_queues_are_editable_by_staff(client, alice, linux):
    client.force_login(alice)
    response = client.post(f"/status/manage/components/{linux.code}/", {
        "name": "Linux builds", "description": "", "position": 3, "show_uptime": "on", "queues": "builds.linux, gpu"})
    assert response.status_code == 302
    linux.refresh_from_db()
    assert linux.queue_list == ["builds.linux", "gpu"] and linux.position == 3 and linux.updated_by == alice


def test_draft_from_alert_is_private_until_staff_publish_it(client, alice, linux, mailoutbox):
    mac = Component.objects.create(name="macOS builds", queues="builds.mac")
    draft = services.incident_draft_from_alert(title="Linux queue backing up", message="Wait time above 10 min",
                                               queues=["builds.linux-arm", "unknown"])
    assert not draft.is_published and list(draft.components.all()) == [linux]
    assert draft.updates.get().body == "Wait time above 10 min"
    assert services.incident_staff_url(draft) == f"/status/manage/incidents/{draft.code}/"
    assert mac not in draft.components.all()
    assert client.get(draft.get_absolute_url()).status_code == 404

    client.force_login(alice)
    page = client.get(services.incident_staff_url(draft)).content.decode()
    assert "draft" in page and "Linux queue backing up" in page
    assert '<option value="operational" selected>' in page  # the affected component, prefilled
    response = client.post(services.incident_staff_url(draft), {
        "name": "Linux builds start late", "status": "identified", "impact": "minor", "message": "A slow image pull.",
        f"component-{linux.code}": "degraded_performance"})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.is_published and draft.name == "Linux builds start late" and draft.status == "identified"
    update = draft.updates.get()
    assert update.body == "A slow image pull." and update.affected_components[0]["new_status"] == "degraded_performance"
    assert client.get(draft.get_absolute_url()).status_code == 200
    assert mailoutbox == []  # notify was left off


def test_maintenance_is_scheduled_then_started_and_completed_by_beat(client, alice, linux):
    client.force_login(alice)
    start = timezone.now() + timedelta(hours=1)
    response = client.post("/status/manage/maintenance/new/", {
        "name": "Image rollout", "scheduled_for": start.strftime("%Y-%m-%dT%H:%M"),
        "scheduled_until": (start + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"), "message": "Rolling out.",
        "components": [linux.pk], "auto_transition": "on"})
    assert response.status_code == 302
    m = Maintenance.objects.get()
    assert (m.status, m.created_by) == ("scheduled", alice)

    from incidents.tasks import transition_maintenance
    assert transition_maintenance() == 0
    assert services.maintenance_transition_due(now=start + timedelta(minutes=1)) == 1
    m.refresh_from_db()
    linux.refresh_from_db()
    assert m.status == "in_progress" and linux.status == "under_maintenance"
    assert services.maintenance_transition_due(now=start + timedelta(minutes=2)) == 0  # idempotent
    assert services.maintenance_transition_due(now=start + timedelta(hours=1, minutes=1)) == 1
    m.refresh_from_db()
    linux.refresh_from_db()
    assert m.status == "completed" and m.completed_at and linux.status == "operational"
    assert [u.status for u in m.updates.order_by("id")] == ["scheduled", "in_progress", "completed"]


def test_maintenance_without_auto_transition_waits_for_staff(client, alice, linux):
    now = timezone.now()
    m = services.maintenance_schedule(name="Manual", scheduled_for=now - timedelta(hours=1), scheduled_until=now,
                                      message="x", components=[linux], auto_transition=False, notify=False,
                                      created_by=alice)
    assert services.maintenance_transition_due() == 0
    client.force_login(alice)
    client.post(f"/status/manage/maintenance/{m.code}/", {"status": "in_progress", "message": "Started by hand."})
    m.refresh_from_db()
    assert m.status == "in_progress" and m.updates.first().created_by == alice


def test_completing_maintenance_leaves_a_real_outage_alone(alice, linux):
    now = timezone.now()
    m = services.maintenance_schedule(name="M", scheduled_for=now, scheduled_until=now + timedelta(hours=1),
                                      message="x", components=[linux], auto_transition=True, notify=False,
                                      created_by=alice)
    services.maintenance_update_post(maintenance=m, status="in_progress", message="go", notify=False, created_by=alice)
    services.component_status_set(component=linux, status="major_outage", by=alice)
    services.maintenance_update_post(maintenance=m, status="completed", message="done", notify=False, created_by=alice)
    linux.refresh_from_db()
    assert linux.status == "major_outage"


def test_beat_runs_the_maintenance_task_every_minute(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["status-maintenance-transitions"]
    assert entry["task"] == "incidents.tasks.transition_maintenance" and entry["schedule"] == 60.0
