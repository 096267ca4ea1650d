"""The public status page, incident pages, history, feeds, uptime bars, markdown and the page cache."""

import re
from datetime import UTC, datetime, timedelta

import feedparser
import pytest
import time_machine
from django.utils import timezone

from incidents import fastpath, services
from incidents.markdown import render_markdown
from incidents.models import Component, ComponentGroup, ComponentStatusChange
from incidents.uptime import uptime_for

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """alice and bob log in with force_login here; PBKDF2's million rounds only slow the suite."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def linux(db):
    group = ComponentGroup.objects.create(name="Builds")
    return Component.objects.create(name="Linux builds", group=group, queues="builds.linux",
                                    created_at=timezone.now() - timedelta(days=200))


def open_incident(alice, component, name="Slow builds", status="partial_outage", **kwargs):
    return services.incident_open(name=name, status="investigating", impact="major", message="Looking **into** it.",
                                  component_statuses={component: status}, notify=False, created_by=alice, **kwargs)


def test_all_operational_page(client, linux):
    html = client.get("/status/").content.decode()
    assert "All Systems Operational" in html and "banner-none" in html
    assert "Linux builds" in html and "Builds" in html
    assert html.count('class="day day-ok"') == 90
    assert "100.0 % uptime" in html
    assert "No incidents reported." in html


def test_active_incident_shows_in_banner_components_and_list(client, alice, linux):
    incident = open_incident(alice, linux)
    html = client.get("/status/").content.decode()
    assert "Partial System Outage" in html and "banner-major" in html
    assert "status-partial_outage" in html
    assert f'href="/status/incidents/{incident.code}/"' in html
    assert "Looking <strong>into</strong> it." in html


def test_page_is_cached_and_every_post_invalidates_it(client, alice, linux, django_assert_max_num_queries):
    first = client.get("/status/").content
    with django_assert_max_num_queries(1):
        assert client.get("/status/").content == first
    incident = open_incident(alice, linux)
    second = client.get("/status/").content.decode()
    assert "Slow builds" in second
    services.incident_update_post(incident=incident, status="resolved", message="Fixed it.",
                                  component_statuses={linux: "operational"}, notify=False, created_by=alice)
    third = client.get("/status/").content.decode()
    assert "All Systems Operational" in third and "Fixed it." in third
    # Through the staff UI too, and a plain component status change.
    client.force_login(alice)
    client.post(f"/status/manage/components/{linux.code}/status/", {"status": "major_outage"})
    client.logout()
    assert "Major Service Outage" in client.get("/status/").content.decode()
    assert "Major Service Outage" in client.get("/status/?fragment=1").content.decode()


def test_signed_in_visitors_get_their_own_navigation_around_the_cached_body(client, alice, linux):
    client.get("/status/")
    client.force_login(alice)
    html = client.get("/status/").content.decode()
    assert "Log out alice" in html and 'href="/status/manage/"' in html


def test_front_door_answers_anonymous_repeats_without_touching_the_database(client, alice, linux,
                                                                           django_assert_num_queries):
    first = client.get("/status/")
    client.get("/api/v2/summary.json")
    with django_assert_num_queries(0):
        again = client.get("/status/")
        json_again = client.get("/api/v2/summary.json")
    assert again.content == first.content and json_again["Access-Control-Allow-Origin"] == "*"
    assert again["Content-Security-Policy"] and again["X-Frame-Options"] == "DENY"
    # A change in the same transaction closes the door at once; the next request renders afresh.
    services.component_status_set(component=linux, status="partial_outage", by=alice)
    assert "Partial System Outage" in client.get("/status/").content.decode()
    assert client.get("/api/v2/status.json").json()["status"]["indicator"] == "major"
    # Query strings other than the live fragment, and signed-in visitors, take the normal route.
    assert fastpath.key_for(client.get("/status/?x=1").wsgi_request) is None
    client.force_login(alice)
    assert "Log out alice" in client.get("/status/").content.decode()


def test_fragment_carries_its_sequence(client, alice, linux):
    before = int(client.get("/status/?fragment=1")["X-Status-Seq"])
    open_incident(alice, linux)
    response = client.get("/status/?fragment=1")
    assert int(response["X-Status-Seq"]) > before
    assert "<html" not in response.content.decode()
    assert client.get("/status/seq.json").json()["seq"] == int(response["X-Status-Seq"])


def test_drafts_are_not_public(client, linux):
    draft = services.incident_draft_from_alert(title="Queue stuck", message="Alert fired", queues=["builds.linux"])
    assert client.get(f"/status/incidents/{draft.code}/").status_code == 404
    assert "Queue stuck" not in client.get("/status/").content.decode()
    assert "Queue stuck" not in client.get("/status/history.atom").content.decode()


def test_incident_page_shows_updates_newest_first_with_utc_times(client, alice, linux):
    at = datetime(2017, 2, 5, 21, 56, tzinfo=UTC)
    incident = open_incident(alice, linux, display_at=at)
    services.incident_update_post(incident=incident, status="resolved", message="Done.", component_statuses={},
                                  notify=False, created_by=alice, display_at=at + timedelta(hours=2, minutes=35))
    html = client.get(f"/status/incidents/{incident.code}/").content.decode()
    assert html.index("Feb 06, 2017 - 00:31 UTC") < html.index("Feb 05, 2017 - 21:56 UTC")
    assert 'datetime="2017-02-06T00:31:00+00:00"' in html
    assert re.search(r'data-relative="2017-02-06T00:31:00\+00:00">\d+\xa0years?', html)


def test_markdown_is_sanitized_everywhere_it_is_shown(client, alice, linux):
    nasty = ('<script>alert(1)</script> [click](javascript:alert(2)) <img src=x onerror=alert(3)> '
             '[ok](https://example.com) `<b>`')
    incident = services.incident_open(name="<i>Name</i>", status="investigating", impact="minor", message=nasty,
                                      component_statuses={}, notify=False, created_by=alice)
    for url in ("/status/", f"/status/incidents/{incident.code}/"):
        html = client.get(url).content.decode()
        assert "<script>alert" not in html and 'href="javascript:' not in html and "<img" not in html
        assert "&lt;i&gt;Name&lt;/i&gt;" in html
        assert '<a href="https://example.com" rel="nofollow noopener noreferrer">ok</a>' in html
    assert str(render_markdown("[x](JaVaScRiPt:alert(1))")) == "<p>[x](JaVaScRiPt:alert(1))</p>\n"
    assert "<table>" in render_markdown("| a | b |\n|---|---|\n| 1 | 2 |")


def test_history_lists_incidents_by_month(client, alice, linux):
    open_incident(alice, linux, name="February trouble", display_at=datetime(2017, 2, 5, 21, 56, tzinfo=UTC))
    html = client.get("/status/history/?month=2017-03").content.decode()
    assert "March 2017" in html and "February 2017" in html and "January 2017" in html
    assert "February trouble" in html
    assert "?month=2016-12" in html and "?month=2017-06" in html
    assert client.get("/status/history/?month=nonsense").status_code == 404
    assert "No incidents reported this month." in client.get("/status/history/").content.decode()


def test_both_feeds_parse_with_one_entry_per_incident_and_its_latest_update(client, alice, linux):
    first = open_incident(alice, linux, name="First")
    services.incident_update_post(incident=first, status="resolved", message="All *fixed*.", component_statuses={},
                                  notify=False, created_by=alice)
    open_incident(alice, linux, name="Second")
    for url, version in (("/status/history.atom", "atom10"), ("/status/history.rss", "rss20")):
        response = client.get(url)
        assert response.status_code == 200
        feed = feedparser.parse(response.content)
        assert not feed.bozo, feed.bozo_exception
        assert feed.version == version
        titles = [e.title for e in feed.entries]
        assert sorted(titles) == ["First", "Second"]
        entry = feed.entries[titles.index("First")]
        assert entry.link.endswith(f"/status/incidents/{first.code}/")
        assert "Resolved" in entry.summary and "<em>fixed</em>" in entry.summary


def test_uptime_day_colour_follows_worst_status_and_minutes(linux):
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    linux.created_at = now - timedelta(days=100)
    linux.save()

    def change(old, new, at):
        ComponentStatusChange.objects.create(component=linux, old_status=old, new_status=new, at=at)

    day = lambda n: datetime(2026, 11, 26 - n, tzinfo=UTC)  # noqa: E731
    change("operational", "major_outage", day(1) + timedelta(hours=3))  # 2 h major outage yesterday
    change("major_outage", "operational", day(1) + timedelta(hours=5))
    change("operational", "major_outage", day(2) + timedelta(hours=3))  # 10 min: shown lighter
    change("major_outage", "operational", day(2) + timedelta(hours=3, minutes=10))
    change("operational", "degraded_performance", day(3) + timedelta(hours=23))  # over midnight
    change("degraded_performance", "operational", day(2) + timedelta(hours=1))
    change("operational", "under_maintenance", day(4))
    change("under_maintenance", "operational", day(4) + timedelta(hours=1))
    incident = open_incident(None, Component.objects.create(name="Other"), name="Elsewhere")
    uptime = uptime_for([linux], [incident], now=now)[linux.pk]
    days = {d.date: d for d in uptime.days}
    assert len(uptime.days) == 90 and uptime.days[-1].date == now.date()
    assert days[day(1).date()].level == "major" and days[day(1).date()].minutes == {"major_outage": 120}
    assert days[day(2).date()].level == "partial"
    assert days[day(2).date()].minutes == {"major_outage": 10, "degraded_performance": 60}
    assert days[day(3).date()].level == "degraded"
    assert days[day(4).date()].level == "maintenance"
    assert days[day(5).date()].level == "ok" and days[day(5).date()].summary == "No downtime"
    assert "Major outage 2 h 0 min" in days[day(1).date()].summary
    assert days[day(1).date()].incidents == []  # the incident affected another component
    seconds = (now - datetime.combine(now.date() - timedelta(days=89), datetime.min.time(), UTC)).total_seconds()
    assert uptime.percent == round(100 * (1 - 130 * 60 / seconds), 2)


# At noon: an outage that began two hours ago has lasted two hours today. Just after midnight most of it
# would fall on yesterday, and today's bar would rightly be a shade lighter.
@time_machine.travel(datetime(2026, 11, 26, 12, 0, tzinfo=UTC), tick=False)
def test_uptime_has_no_data_before_a_component_existed_and_lists_the_days_incidents(alice, db):
    web = Component.objects.create(name="Website", created_at=timezone.now() - timedelta(days=2))
    incident = open_incident(alice, web, status="major_outage", display_at=timezone.now() - timedelta(hours=2))
    uptime = uptime_for([web], [incident])[web.pk]
    assert [d.level for d in uptime.days[:87]] == ["nodata"] * 87
    assert uptime.days[-1].level == "major"
    assert uptime.days[-1].incidents == [incident]
    assert uptime.percent < 100


def test_day_detail_names_the_days_incidents_on_the_page(client, alice, linux):
    incident = open_incident(alice, linux, name="Today's trouble")
    html = client.get("/status/").content.decode()
    bar = html[html.index('class="uptime-bar"'):]
    last_day = bar[bar.rindex('<li class="day'):]
    assert 'tabindex="0"' in last_day and "Today&#x27;s trouble" in last_day
    assert f'href="/status/incidents/{incident.code}/"' in last_day


def test_templates_keep_to_the_content_security_policy(client, alice, linux):
    open_incident(alice, linux)
    client.force_login(alice)
    for url in ("/status/", "/status/manage/", "/status/manage/incidents/new/", "/status/subscribe/"):
        html = client.get(url).content.decode()
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), url
        assert not re.search(r"\son[a-z]+=", html), url
        assert " style=" not in html, url


def test_pages_still_answer_when_the_front_door_redis_is_down(client, alice, linux, monkeypatch):
    import redis

    monkeypatch.setattr(fastpath, "_sync_client", redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.2))
    open_incident(alice, linux)  # saving still works: the entries expire on their own
    assert "Partial System Outage" in client.get("/status/").content.decode()
    assert client.get("/api/v2/status.json").json()["status"]["indicator"] == "major"


def test_page_and_json_answer_from_the_database_when_all_of_redis_is_down(client, alice, linux, monkeypatch,
                                                                          settings):
    import redis

    open_incident(alice, linux)
    dead = "redis://127.0.0.1:9/0"
    monkeypatch.setattr(fastpath, "_sync_client", redis.Redis.from_url(dead, socket_connect_timeout=0.2))
    settings.CACHES = {"default": {"BACKEND": "buildboard.lib.cache.RedisCache", "LOCATION": dead,
                                   "OPTIONS": {"socket_connect_timeout": 0.2}}}
    page = client.get("/status/")
    assert page.status_code == 200 and "Partial System Outage" in page.content.decode()
    summary = client.get("/api/v2/summary.json")
    assert summary.status_code == 200 and summary.json()["status"]["indicator"] == "major"
    assert client.get("/status/?fragment=1").status_code == 200


def test_the_front_door_validates_the_host_first(client, linux, settings):
    settings.ALLOWED_HOSTS = ["status.example.com"]
    assert client.get("/status/", HTTP_HOST="status.example.com").status_code == 200
    assert client.get("/api/v2/summary.json", HTTP_HOST="status.example.com").status_code == 200
    # Now cached: the front door would answer, but not to a host the site does not serve.
    assert client.get("/status/", HTTP_HOST="evil.example").status_code == 400
    assert client.get("/api/v2/summary.json", HTTP_HOST="evil.example").status_code == 400


def test_feeds_strip_control_characters_that_xml_cannot_carry(client, alice, linux):
    incident = open_incident(alice, linux, name="Disk \x1b[31mfull\x1b[0m\x07 on builders")
    services.incident_update_post(incident=incident, status="identified", message="Found \x1b it.\x0c Fixing.",
                                  component_statuses={}, notify=False, created_by=alice)
    for url in ("/status/history.atom", "/status/history.rss"):
        response = client.get(url)
        assert response.status_code == 200, url
        feed = feedparser.parse(response.content)
        assert not feed.bozo, feed.bozo_exception
        assert feed.entries[0].title == "Disk [31mfull[0m on builders"
        assert "Found  it. Fixing." in feed.entries[0].summary
