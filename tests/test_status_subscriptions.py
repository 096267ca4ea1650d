"""Self-service subscriptions: to one incident, by webhook or Slack with double opt-in through the endpoint,
behind an SSRF guard; and the feeds carrying the postmortem.

No test here sends traffic anywhere but loopback: where a public address is needed, name resolution is
replaced and the guard is told that loopback counts as public."""

import ipaddress
import json
import re
import socket

import feedparser
import pytest
from playwright.sync_api import expect

from buildboard.lib import ssrf
from incidents import fastpath, services, tasks
from incidents.models import Component, Subscriber, SubscriberKind

from .test_incidents_subscribers import FlakyReceiver, link_in, open_incident

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def linux(db):
    return Component.objects.create(name="Linux builds")


@pytest.fixture
def dns(monkeypatch):
    """Name resolution from a table: host -> addresses (IP literals resolve to themselves)."""
    table: dict[str, list[str]] = {}
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        if host in table:
            return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port))
                    for a in table[host]]
        ipaddress.ip_address(host)  # anything else must be a literal: no lookups leave this machine
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


@pytest.fixture
def loopback_counts_as_public(monkeypatch):
    """For delivering to a local receiver under a 'public' name without any outside traffic."""
    real = ssrf._refused
    monkeypatch.setattr(ssrf, "_refused", lambda ip: "" if ip.is_loopback else real(ip))


@pytest.mark.parametrize("url, reason", [
    ("http://127.0.0.1:9/hook", "loopback"),
    ("http://[::1]/hook", "loopback"),
    ("http://[::ffff:127.0.0.1]/hook", "loopback"),
    ("http://10.1.2.3/hook", "private"),
    ("http://192.168.1.10/hook", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/hook", "link-local"),
    ("http://100.64.0.1/hook", "not a public address"),
    ("http://0.0.0.0/hook", "not a public address"),
    ("ftp://example.com/hook", "Only http and https"),
    ("https://user:pw@hooks.example.test/x", "user name or password"),
])
def test_the_guard_refuses_what_is_not_public(dns, url, reason):
    dns["hooks.example.test"] = ["203.0.113.10"]
    with pytest.raises(ssrf.UnsafeURL, match=reason):
        ssrf.resolve(url)


def test_the_guard_checks_every_address_a_name_resolves_to(dns):
    dns["mixed.example.test"] = ["93.184.216.34", "10.0.0.5"]
    dns["public.example.test"] = ["93.184.216.34", "2606:2800:220:1::1"]
    with pytest.raises(ssrf.UnsafeURL, match="10.0.0.5, a private address"):
        ssrf.resolve("https://mixed.example.test/hook")
    assert ssrf.resolve("https://public.example.test/hook") == ["93.184.216.34", "2606:2800:220:1::1"]
    assert ssrf.resolve("http://127.0.0.1:9/", allow_private=True) == ["127.0.0.1"]


def test_public_form_refuses_private_targets_with_a_clear_message(client, dns):
    dns["internal.example.test"] = ["172.16.0.4"]
    for url in ("http://127.0.0.1:9/hook", "http://169.254.169.254/", "https://internal.example.test/x"):
        response = client.post("/status/subscribe/webhook/", {"kind": "webhook", "url": url})
        assert response.status_code == 400
        assert "notifications only go to public addresses" in response.content.decode()
    response = client.post("/status/subscribe/webhook/", {"kind": "slack", "url": "http://hooks.example.test/x"})
    assert response.status_code == 400 and "starts with https://" in response.content.decode()
    assert not Subscriber.objects.exists()


def test_webhook_double_opt_in_through_the_endpoint_then_signed_updates(
        client, alice, linux, dns, loopback_counts_as_public, django_capture_on_commit_callbacks):
    with FlakyReceiver(failures=0) as receiver:
        port = receiver.server.server_address[1]
        dns["hooks.example.test"] = ["127.0.0.1"]
        url = f"http://hooks.example.test:{port}/hook"
        with django_capture_on_commit_callbacks(execute=True):
            response = client.post("/status/subscribe/webhook/", {"kind": "webhook", "url": url,
                                                                  "components": [linux.pk]})
        assert response.status_code == 200 and "Confirm at the receiving end" in response.content.decode()
        [(headers, body)] = receiver.requests
        assert headers["Host"] == f"hooks.example.test:{port}"  # pinned to the checked address, named as given
        confirmation = json.loads(body)
        assert confirmation["type"] == "subscription_confirmation"
        subscriber = Subscriber.objects.get()
        assert subscriber.kind == SubscriberKind.WEBHOOK and subscriber.confirmed_at is None

        # Nothing but the confirmation goes out before someone confirms.
        with django_capture_on_commit_callbacks(execute=True):
            open_incident(alice, linux)
        assert len(receiver.requests) == 1

        path = re.sub(r"^https?://[^/]+", "", confirmation["confirm_url"])
        assert "Confirm subscription" in client.get(path).content.decode()
        confirmed = client.post(path).content.decode()
        subscriber.refresh_from_db()
        assert subscriber.confirmed_at is not None and subscriber.secret in confirmed
        assert subscriber.secret not in client.post(path).content.decode()  # shown once

        with django_capture_on_commit_callbacks(execute=True):
            open_incident(alice, linux)
        assert len(receiver.requests) == 2
        headers, body = receiver.requests[-1]
        assert headers["X-Buildboard-Signature"] == tasks.sign(subscriber.secret, body)
        assert json.loads(body)["incident"]["name"] == "Slow builds"


def test_slack_subscription_gets_slack_messages(client, alice, linux, dns, loopback_counts_as_public,
                                                django_capture_on_commit_callbacks, monkeypatch):
    with FlakyReceiver(failures=0) as receiver:
        dns["hooks.slack.example"] = ["127.0.0.1"]
        # Slack URLs are https; this local receiver speaks http, so the scheme check is what we pass.
        url = f"http://hooks.slack.example:{receiver.server.server_address[1]}/services/T0/B0/x"
        subscriber = Subscriber.objects.create(kind=SubscriberKind.SLACK, url=url)
        tasks.send_url_confirmation(subscriber.pk)
        message = json.loads(receiver.requests[0][1])
        assert "Confirm the subscription" in message["blocks"][0]["text"]["text"]
        services.subscriber_confirm(subscriber=subscriber)
        with django_capture_on_commit_callbacks(execute=True):
            open_incident(alice, linux)
        update = json.loads(receiver.requests[-1][1])
        assert update["text"].startswith("Slow builds: Investigating")
        assert "Unsubscribe this channel" in json.dumps(update["blocks"])


def test_delivery_refuses_a_private_target_unless_staff_allowed_it(alice, dns):
    with FlakyReceiver(failures=0) as receiver:
        # Public when subscribed, loopback now (DNS rebinding): refused at delivery, never contacted.
        dns["rebind.example.test"] = ["127.0.0.1"]
        url = f"http://rebind.example.test:{receiver.server.server_address[1]}/hook"
        rebinding = Subscriber.objects.create(kind=SubscriberKind.WEBHOOK, url=url, confirmed_at="2026-01-01T00:00Z")
        assert tasks.deliver_webhook(rebinding.pk, "{}") is None
        rebinding.refresh_from_db()
        assert rebinding.last_delivery_status.startswith("Refused:") and "loopback" in rebinding.last_delivery_status
        assert receiver.requests == []

        allowed = services.webhook_create(url=receiver.url, components=[], created_by=alice, allow_private=True)
        assert tasks.deliver_webhook(allowed.pk, "{}") == 200
        assert len(receiver.requests) == 1


def test_staff_webhook_form_needs_the_private_box_for_an_internal_target(client, alice):
    client.force_login(alice)
    response = client.post("/status/manage/webhooks/new/", {"kind": "webhook", "url": "http://127.0.0.1:9/"})
    assert response.status_code == 400 and "loopback" in response.content.decode()
    response = client.post("/status/manage/webhooks/new/", {"kind": "webhook", "url": "http://127.0.0.1:9/",
                                                            "allow_private": "on"})
    assert response.status_code == 200 and Subscriber.objects.get().allow_private


def test_following_one_incident_gets_only_its_updates(client, alice, linux, mailoutbox,
                                                      django_capture_on_commit_callbacks):
    followed = open_incident(alice, linux, notify=False)
    other = open_incident(alice, linux, notify=False)
    page = client.get(f"/status/subscribe/?incident={followed.code}").content.decode()
    assert f"Follow “{followed.name}”" in page
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/status/subscribe/", {"email": "dana@example.com", "incident": followed.code})
    subscriber = Subscriber.objects.get()
    assert subscriber.incident == followed
    client.post(link_in(mailoutbox[0], "/status/subscribe/confirm/"))
    mailoutbox.clear()

    with django_capture_on_commit_callbacks(execute=True):
        services.incident_update_post(incident=other, status="identified", message="Other news.",
                                      component_statuses={}, notify=True, created_by=alice)
    assert mailoutbox == []
    with django_capture_on_commit_callbacks(execute=True):
        services.incident_update_post(incident=followed, status="monitoring", message="A fix is out.",
                                      component_statuses={}, notify=True, created_by=alice)
    [mail] = mailoutbox
    assert "A fix is out." in mail.body

    response = client.post("/status/subscribe/", {"email": "dana@example.com", "incident": "nosuchcode12"})
    assert response.status_code == 400 and "That incident does not exist." in response.content.decode()


def test_feeds_show_the_postmortem_once_published(client, alice, linux):
    fastpath.forget()
    incident = open_incident(alice, linux, notify=False)
    services.postmortem_save(incident=incident, body="A draft *nobody* should see.", by=alice)
    for path in ("/status/history.atom", "/status/history.rss"):
        assert "nobody" not in client.get(path).content.decode()
    services.postmortem_publish(incident=incident, body="The **image cache** was cold.", notify=False, by=alice)
    for path in ("/status/history.atom", "/status/history.rss"):
        feed = feedparser.parse(client.get(path).content)
        [entry] = feed.entries
        text = entry.get("summary", "") + "".join(c.value for c in entry.get("content", []))
        assert "Postmortem" in text and "<strong>image cache</strong>" in text


@pytest.mark.browser
def test_subscribe_button_at_the_top_and_following_an_incident(asgi_server, page, alice, linux):
    fastpath.forget()
    incident = open_incident(alice, linux, notify=False)
    page.goto(f"{asgi_server}/status/")
    button = page.get_by_role("link", name="Subscribe to updates").first
    banner = page.locator(".banner")
    assert button.bounding_box()["y"] < banner.bounding_box()["y"]
    page.goto(f"{asgi_server}/status/incidents/{incident.code}/")
    page.get_by_role("link", name="Follow this incident").click()
    expect(page.locator("h1")).to_have_text(f"Follow “{incident.name}”")
    page.get_by_role("textbox", name="Email").fill("erin@example.com")
    page.get_by_role("button", name="Subscribe by email").click()
    expect(page.locator("h1")).to_have_text("Check your mail")
    assert Subscriber.objects.get(email="erin@example.com").incident_id == incident.pk
