"""Subscribers: email double opt-in, unsubscribe links, per-component interest, and signed webhooks that
are retried with backoff against a real local HTTP server."""

import hashlib
import hmac
import itertools
import json
import re
import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import time_machine
from django.conf import settings
from django.utils import timezone

from buildboard import celery_app
from incidents import services, tasks
from incidents.models import Component, Subscriber

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """alice and bob log in with force_login here; PBKDF2's million rounds only slow the suite."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def linux(db):
    return Component.objects.create(name="Linux builds")


@pytest.fixture
def mac(db):
    return Component.objects.create(name="macOS builds")


def link_in(mail, path_prefix: str) -> str:
    match = re.search(rf"https?://[^/\s]+({re.escape(path_prefix)}[^\s>]+)", mail.body)
    assert match, mail.body
    return match.group(1)


def subscribe(client, email, components=(), address=None):
    """From an address of its own unless given: the form is rate-limited per client address."""
    address = address or f"198.51.100.{next(_addresses)}"
    return client.post("/status/subscribe/", {"email": email, "components": [c.pk for c in components]},
                       REMOTE_ADDR=address)


_addresses = itertools.cycle(range(1, 255))


def open_incident(alice, component, notify=True):
    return services.incident_open(name="Slow builds", status="investigating", impact="minor", message="Looking.",
                                  component_statuses={component: "degraded_performance"}, notify=notify,
                                  created_by=alice)


def test_double_opt_in_then_notified_then_unsubscribed(client, alice, linux, mailoutbox,
                                                      django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = subscribe(client, "carol@example.com")
    assert response.status_code == 200 and "carol@example.com" in response.content.decode()
    [confirmation] = mailoutbox
    assert confirmation.to == ["carol@example.com"]
    subscriber = Subscriber.objects.get()
    assert subscriber.confirmed_at is None

    with django_capture_on_commit_callbacks(execute=True):
        open_incident(alice, linux)
    assert len(mailoutbox) == 1, "nothing goes to an unconfirmed address"

    confirm_path = link_in(confirmation, "/status/subscribe/confirm/")
    page = client.get(confirm_path)
    assert page.status_code == 200 and "Confirm subscription" in page.content.decode()
    assert Subscriber.objects.get().confirmed_at is None, "a GET (a mail scanner) confirms nothing"
    assert client.post(confirm_path).status_code == 200
    assert Subscriber.objects.get().confirmed_at is not None

    with django_capture_on_commit_callbacks(execute=True):
        open_incident(alice, linux)
    notification = mailoutbox[-1]
    assert len(mailoutbox) == 2 and "Slow builds" in notification.subject and "Looking." in notification.body
    unsubscribe_path = link_in(notification, "/status/unsubscribe/")
    assert notification.extra_headers["List-Unsubscribe"].endswith(f"{unsubscribe_path}>")

    assert client.get(unsubscribe_path).status_code == 200
    assert Subscriber.objects.get().unsubscribed_at is None
    assert client.post(unsubscribe_path).status_code == 200  # one-click, no CSRF token needed
    assert Subscriber.objects.get().unsubscribed_at is not None
    with django_capture_on_commit_callbacks(execute=True):
        open_incident(alice, linux)
    assert len(mailoutbox) == 2


def test_tampered_or_expired_tokens_are_refused(client, db, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        subscribe(client, "dave@example.com")
    subscriber = Subscriber.objects.get()
    path = link_in(mailoutbox[0], "/status/subscribe/confirm/")
    assert client.post(path[:-3] + "xyz/").status_code == 400
    # An unsubscribe token does not confirm, and a confirm token does not unsubscribe.
    assert client.post(f"/status/subscribe/confirm/{tasks.unsubscribe_token(subscriber)}/").status_code == 400
    assert client.post(f"/status/unsubscribe/{tasks.confirm_token(subscriber)}/").status_code == 400
    assert Subscriber.objects.get().confirmed_at is None


def test_confirm_links_expire(client, db, mailoutbox, settings, django_capture_on_commit_callbacks, monkeypatch):
    with django_capture_on_commit_callbacks(execute=True):
        subscribe(client, "erin@example.com")
    path = link_in(mailoutbox[0], "/status/subscribe/confirm/")
    monkeypatch.setattr(tasks, "CONFIRM_MAX_AGE", -1)
    assert client.post(path).status_code == 400


def test_subscribing_again_soon_sends_no_second_confirmation(client, db, mailoutbox,
                                                            django_capture_on_commit_callbacks):
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            assert subscribe(client, "grace@example.com").status_code == 200
    assert len(mailoutbox) == 1 and Subscriber.objects.count() == 1


def test_the_form_is_rate_limited_per_client_address(client, db, mailoutbox, settings,
                                                     django_capture_on_commit_callbacks):
    settings.SUBSCRIBE_RATE = "3/h"
    address = f"203.0.113.{secrets.randbelow(250) + 1}"
    # The limit counts in fixed windows: keep all five requests inside one, at any hour the suite runs.
    with time_machine.travel(timezone.now().replace(minute=30), tick=False), \
            django_capture_on_commit_callbacks(execute=True):
        answers = [subscribe(client, f"victim{i}@example.com", address=address).status_code for i in range(5)]
        other = subscribe(client, "someone@example.com", address="192.0.2.1").status_code
        refused = subscribe(client, "x@example.com", address=address)
        hook = client.post("/status/subscribe/webhook/", {"kind": "webhook", "url": "https://example.com/hook"},
                           REMOTE_ADDR=address)  # the webhook form counts against the same limit
    assert answers == [200, 200, 200, 429, 429] and other == 200 and hook.status_code == 429
    assert len(mailoutbox) == 4
    assert refused.status_code == 429 and "Too many subscription requests" in refused.content.decode()


def test_an_anonymous_post_cannot_change_a_confirmed_subscription(client, linux, mac, mailoutbox,
                                                                   django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        subscribe(client, "heidi@example.com", components=[linux])
    assert client.post(link_in(mailoutbox[0], "/status/subscribe/confirm/")).status_code == 200
    Subscriber.objects.update(confirmation_sent_at=None)  # as if the resend window had passed
    with django_capture_on_commit_callbacks(execute=True):
        response = subscribe(client, "heidi@example.com", components=[mac])
    assert response.status_code == 200  # the same answer as for any address: nothing is revealed
    subscriber = Subscriber.objects.get()
    assert list(subscriber.components.all()) == [linux] and subscriber.confirmed_at is not None
    # Only its owner, through the link mailed to the address, changes it.
    manage = mailoutbox[-1]
    assert len(mailoutbox) == 2 and manage.to == ["heidi@example.com"] and "already subscribed" in manage.body
    path = link_in(manage, "/status/subscribe/manage/")
    assert "heidi@example.com" in client.get(path).content.decode()
    assert client.post(path, {"components": [mac.pk]}).status_code == 200
    assert list(subscriber.components.all()) == [mac]
    assert client.post(path[:-3] + "xyz/", {"components": [linux.pk]}).status_code == 400
    assert client.post(f"/status/subscribe/manage/{tasks.confirm_token(subscriber)}/").status_code == 400
    assert list(subscriber.components.all()) == [mac]


def test_bad_email_is_a_form_error(client, db, mailoutbox):
    response = subscribe(client, "not-an-address")
    assert response.status_code == 400 and "Enter a valid email address." in response.content.decode()
    assert Subscriber.objects.count() == 0 and mailoutbox == []


def test_per_component_subscribers_hear_only_about_their_components(alice, linux, mac, mailoutbox,
                                                                      django_capture_on_commit_callbacks):
    def confirmed(email, components):
        s = services.subscriber_subscribe_email(email=email, components=components)
        services.subscriber_confirm(subscriber=s)

    confirmed("mac-only@example.com", [mac])
    confirmed("everything@example.com", [])
    confirmed("linux-only@example.com", [linux])
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        open_incident(alice, linux)
    assert sorted(m.to[0] for m in mailoutbox) == ["everything@example.com", "linux-only@example.com"]
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        open_incident(alice, linux, notify=False)
    assert mailoutbox == []


def test_drafts_notify_nobody(linux, mailoutbox, django_capture_on_commit_callbacks):
    s = services.subscriber_subscribe_email(email="f@example.com", components=[])
    services.subscriber_confirm(subscriber=s)
    mailoutbox.clear()
    with django_capture_on_commit_callbacks(execute=True):
        services.incident_draft_from_alert(title="t", message="m", queues=[])
    assert mailoutbox == []


@pytest.fixture
def eager_retries():
    """Eager tasks that retry in place: Celery re-applies a retried eager task at once (ignoring the
    countdown) unless failures propagate, so each delivery attempt reaches the receiver for real."""
    celery_app.conf.task_eager_propagates = False
    yield
    celery_app.conf.task_eager_propagates = True


class FlakyReceiver:
    """A real HTTP server on loopback that answers 503 to the first `failures` requests, then 200."""

    def __init__(self, failures: int):
        self.failures, self.requests = failures, []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests.append((dict(self.headers), body))
                self.send_response(503 if len(receiver.requests) <= receiver.failures else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def test_webhook_is_signed_and_retried_until_it_gets_through(alice, linux, django_capture_on_commit_callbacks,
                                                             eager_retries):
    with FlakyReceiver(failures=2) as receiver:
        hook = services.webhook_create(url=receiver.url, components=[], created_by=alice, allow_private=True)
        with django_capture_on_commit_callbacks(execute=True):
            incident = open_incident(alice, linux)
    assert len(receiver.requests) == 3, "two failures, then delivered on the third try"
    bodies = {body for _, body in receiver.requests}
    assert len(bodies) == 1, "every attempt sends the same bytes"
    for headers, body in receiver.requests:
        expected = "sha256=" + hmac.new(hook.secret.encode(), body, hashlib.sha256).hexdigest()
        assert hmac.compare_digest(headers["X-Buildboard-Signature"], expected)
        assert headers["Content-Type"] == "application/json"
    payload = json.loads(bodies.pop())
    assert payload["incident"]["id"] == incident.code and payload["incident"]["status"] == "investigating"
    assert payload["page"]["status_indicator"] == "minor"
    assert "/status/unsubscribe/" in payload["meta"]["unsubscribe"]
    hook.refresh_from_db()
    assert hook.last_delivery_status == "HTTP 200 (attempt 3)"


def test_webhook_gives_up_after_its_retries(alice, linux, eager_retries):
    with FlakyReceiver(failures=100) as receiver:
        hook = services.webhook_create(url=receiver.url, components=[], created_by=alice, allow_private=True)
        result = tasks.deliver_webhook.delay(hook.pk, '{"x":1}')
    assert result.state == "FAILURE" and isinstance(result.result, tasks.WebhookFailed)
    assert len(receiver.requests) == tasks.deliver_webhook.max_retries + 1
    hook.refresh_from_db()
    assert hook.last_delivery_status == f"HTTP 503 (attempt {tasks.deliver_webhook.max_retries + 1})"


def test_webhook_retries_back_off_exponentially():
    task = tasks.deliver_webhook
    assert tasks.WebhookFailed in task.autoretry_for
    assert task.retry_backoff == 10 and task.retry_jitter is True
    # Every countdown stays under the broker's visibility timeout, so no waiting retry is delivered twice.
    assert task.retry_backoff_max < settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    from celery.utils.time import get_exponential_backoff_interval

    delays = [get_exponential_backoff_interval(task.retry_backoff, n, task.retry_backoff_max, full_jitter=False)
              for n in range(task.max_retries)]
    assert delays[:5] == [10, 20, 40, 80, 160] and set(delays[5:]) == {240}
    assert sum(delays) > 3600  # still about an hour of retrying in all


def test_unreachable_webhook_is_recorded_and_retried(alice, eager_retries):
    hook = services.webhook_create(url="http://127.0.0.1:9/hook", components=[], created_by=alice,
                                  allow_private=True)
    result = tasks.deliver_webhook.delay(hook.pk, "{}")
    assert result.state == "FAILURE"
    hook.refresh_from_db()
    attempts = 1 + tasks.deliver_webhook.max_retries
    assert hook.last_delivery_status == f"ConnectError: [Errno 111] Connection refused (attempt {attempts})"


def test_public_cannot_add_webhooks(client, db):
    assert client.post("/status/manage/webhooks/new/", {"url": "http://127.0.0.1:9/"}).status_code == 302
    assert Subscriber.objects.count() == 0
