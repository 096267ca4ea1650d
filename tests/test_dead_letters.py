"""Log parts that could not be stored: staff see them on the fleet page with a count, and an alert fires."""

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from fleet import alerts
from fleet.models import Alert
from jobs import ingest, tasks
from jobs.models import DeadLetter

pytestmark = pytest.mark.django_db


@pytest.fixture
def set_aside(job):
    """A job whose buffer held an unreadable item between two good parts, flushed."""
    token = ingest.buffer_parts(job.pk, 1, json.dumps({"parts": [{"number": 0, "content": "a\n"}]}).encode())
    ingest.buffer_parts(job.pk, 1, b'{"parts": [{"number": 1, "content": ')  # cut off: cannot be read
    ingest.buffer_parts(job.pk, 1, json.dumps({"parts": [{"number": 1, "content": "b\n"}]}).encode())
    tasks.flush_log_parts(job.pk, token)
    return job


def test_the_fleet_page_counts_and_lists_dead_letters_for_staff(staff, bob, client, set_aside):
    job = set_aside
    job.refresh_from_db()
    assert job.log_persisted_through == 1 and DeadLetter.objects.count() == 1
    for url in ("/fleet/", "/fleet/live"):
        html = staff.get(url).content.decode()
        assert 'data-role="dead-letter-count">1<' in html
        assert f'href="/jobs/{job.pk}/"' in html and "JSONDecodeError" in html
    client.force_login(bob)
    assert client.get("/fleet/live").status_code == 403


def test_no_dead_letters_says_so(staff, db):
    html = staff.get("/fleet/").content.decode()
    assert 'data-role="dead-letter-count">0<' in html and "every accepted log part has been stored" in html


def test_dead_letters_raise_an_alert_per_queue_that_resolves_when_they_stop(set_aside):
    job = set_aside
    now = timezone.now()
    fired = alerts.alerts_evaluate(now=now).fired
    alert = Alert.objects.get(rule="log_dead_letters")
    assert alert in fired and alert.subject == f"{job.queue}:dead-letters" and alert.is_open
    assert alert.evidence["count"] == 1 and alert.evidence["job_ids"] == [job.pk]
    assert "could not be stored" in alert.title
    later = now + timedelta(minutes=61 + 5)
    alerts.alerts_evaluate(now=later - timedelta(minutes=5))  # out of the window: condition clear from here
    alerts.alerts_evaluate(now=later)
    alert.refresh_from_db()
    assert not alert.is_open
