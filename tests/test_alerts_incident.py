"""From alert to incident: staff draft an unpublished incident, components prefilled from the alert's queue."""

import pytest

from fleet.models import Alert
from incidents.models import Component, Incident

pytestmark = pytest.mark.django_db


def _alert() -> Alert:
    return Alert.objects.create(
        rule="desired_version_missing", subject="builds.linux",
        title="No instance of builds.linux runs desired version v2.5.0 in service", summary="internal detail",
        evidence={"queue": "builds.linux", "queues": ["builds.linux"], "desired_version": "v2.5.0"})


def test_staff_draft_an_unpublished_incident_from_an_alert(staff, alice):
    linux = Component.objects.create(name="Linux builds", queues="builds.linux")
    Component.objects.create(name="macOS builds", queues="builds.mac")
    alert = _alert()
    response = staff.post(f"/alerts/{alert.pk}/incident")
    incident = Incident.objects.get()
    assert response.status_code == 302 and response["Location"] == Alert.objects.get().incident_url
    assert incident.published_at is None
    assert list(incident.components.all()) == [linux]
    assert incident.name == "Desired version not in service on builds.linux"
    assert "internal detail" not in incident.updates.get().body  # the draft speaks to the public, not to staff
    assert incident.created_by == alice
    assert staff.get(f"/alerts/{alert.pk}/").content.decode().count("Draft incident #") == 1


def test_a_second_click_opens_the_same_draft(staff):
    alert = _alert()
    first = staff.post(f"/alerts/{alert.pk}/incident")["Location"]
    assert staff.post(f"/alerts/{alert.pk}/incident")["Location"] == first
    assert Incident.objects.count() == 1


def test_only_staff_draft_incidents(client, bob):
    alert = _alert()
    assert client.post(f"/alerts/{alert.pk}/incident").status_code == 302  # to the login page
    client.force_login(bob)
    assert client.post(f"/alerts/{alert.pk}/incident").status_code == 403
    assert not Incident.objects.exists()
