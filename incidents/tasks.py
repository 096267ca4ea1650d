"""Celery tasks: notify subscribers (email, signed webhooks retried with backoff) and move maintenance
along its schedule. Tasks receive ids and re-read rows, so a late or repeated run is harmless."""

import hashlib
import hmac
import json
import logging

import httpx
from celery import shared_task
from django.conf import settings
from django.core import signing
from django.core.mail import EmailMessage
from django.db import DatabaseError
from django.urls import reverse
from django.utils import timezone

from buildboard.lib import ssrf

from . import api, services
from .models import URL_KINDS, IncidentUpdate, MaintenanceUpdate, Postmortem, Subscriber, SubscriberKind

log = logging.getLogger(__name__)

CONFIRM_SALT = "incidents.subscriber.confirm"
UNSUBSCRIBE_SALT = "incidents.subscriber.unsubscribe"
MANAGE_SALT = "incidents.subscriber.manage"
CONFIRM_MAX_AGE = 7 * 24 * 3600
SIGNATURE_HEADER = "X-Buildboard-Signature"


class WebhookFailed(Exception):
    """The receiver answered with an error status; worth retrying later."""


def confirm_token(subscriber: Subscriber) -> str:
    return signing.dumps(subscriber.code, salt=CONFIRM_SALT)


def manage_token(subscriber: Subscriber) -> str:
    return signing.dumps(subscriber.code, salt=MANAGE_SALT)


def unsubscribe_token(subscriber: Subscriber) -> str:
    return signing.dumps(subscriber.code, salt=UNSUBSCRIBE_SALT)


def subscriber_from_token(token: str, *, salt: str, max_age: int | None = None) -> Subscriber | None:
    try:
        code = signing.loads(token, salt=salt, max_age=max_age)
    except signing.BadSignature:
        return None
    return Subscriber.objects.filter(code=code).first()


def unsubscribe_url(subscriber: Subscriber) -> str:
    return settings.SITE_ROOT + reverse("incidents-unsubscribe", args=[unsubscribe_token(subscriber)])


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@shared_task(acks_late=True, autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=5)
def send_confirmation(subscriber_id: int) -> None:
    subscriber = Subscriber.objects.filter(pk=subscriber_id, kind=SubscriberKind.EMAIL,
                                           confirmed_at__isnull=True).first()
    if subscriber is None:
        return
    link = settings.SITE_ROOT + reverse("incidents-confirm", args=[confirm_token(subscriber)])
    body = (f"Someone (hopefully you) asked to receive {settings.SITE_NAME} status notifications at this address.\n\n"
            f"Confirm your subscription:\n{link}\n\n"
            "If you did not ask for this, ignore this message and nothing will be sent.\n")
    EmailMessage(f"[{settings.SITE_NAME} status] Confirm your subscription", body,
                 settings.DEFAULT_FROM_EMAIL, [subscriber.email]).send()


@shared_task(acks_late=True, autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=5)
def send_manage_link(subscriber_id: int) -> None:
    """Someone asked to subscribe an address that is already subscribed: its owner, and only its owner,
    gets a link to change which components it follows."""
    subscriber = Subscriber.objects.active().filter(pk=subscriber_id, kind=SubscriberKind.EMAIL).first()
    if subscriber is None:
        return
    link = settings.SITE_ROOT + reverse("incidents-manage-subscription", args=[manage_token(subscriber)])
    body = (f"Someone (hopefully you) asked to subscribe this address to {settings.SITE_NAME} status notifications. "
            "It is already subscribed.\n\n"
            f"To change which components you hear about, follow this link:\n{link}\n\n"
            "If you did not ask for this, ignore this message: nothing changes.\n")
    EmailMessage(f"[{settings.SITE_NAME} status] Your subscription", body,
                 settings.DEFAULT_FROM_EMAIL, [subscriber.email]).send()


def _content(kind: str, pk: int) -> tuple[dict, str, str, list[int], int | None] | None:
    """(webhook payload, mail subject, mail text, affected component ids, incident id or None) of what is
    announced."""
    if kind == "incident_update":
        update = IncidentUpdate.objects.select_related("incident").filter(pk=pk).first()
        if update is None or not update.incident.is_published:
            return None
        incident = api.public_incidents().get(pk=update.incident_id)
        subject = f"[{settings.SITE_NAME} status] {incident.name}: {update.get_status_display()}"
        text = f"{update.get_status_display()} - {update.body}"
        return ({"incident": api.incident_json(incident)}, subject, text,
                list(incident.components.values_list("pk", flat=True)), incident.pk)
    if kind == "postmortem":
        postmortem = Postmortem.objects.select_related("incident").filter(pk=pk).first()
        if postmortem is None or postmortem.published_at is None or not postmortem.incident.is_published:
            return None
        incident = api.public_incidents().get(pk=postmortem.incident_id)
        subject = f"[{settings.SITE_NAME} status] Postmortem: {incident.name}"
        return ({"incident": api.incident_json(incident), "postmortem": {"body": postmortem.body}}, subject,
                postmortem.body, list(incident.components.values_list("pk", flat=True)), incident.pk)
    if kind == "maintenance_update":
        update = MaintenanceUpdate.objects.filter(pk=pk).first()
        if update is None:
            return None
        maintenance = api.maintenances().get(pk=update.maintenance_id)
        subject = f"[{settings.SITE_NAME} status] Maintenance {update.get_status_display().lower()}: {maintenance.name}"
        text = (f"{update.get_status_display()} - {update.body}\n\nScheduled for "
                f"{maintenance.scheduled_for:%b %d, %Y %H:%M} to {maintenance.scheduled_until:%b %d, %Y %H:%M} UTC")
        return ({"incident": api.maintenance_json(maintenance)}, subject, text,
                list(maintenance.components.values_list("pk", flat=True)), None)
    raise ValueError(f"unknown notification kind {kind!r}")


def slack_message(subject: str, text: str, link: str, unsubscribe: str) -> dict:
    """A Slack incoming-webhook message (text for notifications, blocks for the channel)."""
    plain = subject.split("] ", 1)[-1]
    return {"text": f"{plain}: {text[:300]}",
            "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"*<{link}|{plain}>*\n{text[:2800]}"}},
                       {"type": "context", "elements": [{"type": "mrkdwn",
                                                         "text": f"<{unsubscribe}|Unsubscribe this channel>"}]}]}


@shared_task(acks_late=True, autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=5)
def notify_subscribers(kind: str, pk: int) -> int:
    """Fan out one announcement to every interested, confirmed subscriber; returns how many."""
    content = _content(kind, pk)
    if content is None:
        return 0
    payload, subject, text, component_ids, incident_id = content
    link = payload["incident"]["shortlink"]
    subscribers = list(Subscriber.objects.active().following(incident_id).interested_in(component_ids))
    for s in subscribers:
        if s.kind == SubscriberKind.EMAIL:
            send_notification_email.delay(s.pk, subject, f"{text}\n\n{link}\n")
        elif s.kind == SubscriberKind.SLACK:
            deliver_webhook.delay(s.pk, json.dumps(slack_message(subject, text, link, unsubscribe_url(s))))
        else:
            body = {"meta": {"unsubscribe": unsubscribe_url(s), "generated_at": timezone.now().isoformat()},
                    "page": {"id": settings.STATUS_PAGE_ID, **_page_status()}, **payload}
            deliver_webhook.delay(s.pk, json.dumps(body, separators=(",", ":")))
    return len(subscribers)


@shared_task(acks_late=True, autoretry_for=(DatabaseError,), retry_backoff=True, max_retries=5)
def send_url_confirmation(subscriber_id: int) -> None:
    """The double opt-in of a webhook or Slack subscription: the endpoint gets the confirmation link."""
    subscriber = Subscriber.objects.filter(pk=subscriber_id, kind__in=URL_KINDS, confirmed_at__isnull=True).first()
    if subscriber is None:
        return
    link = settings.SITE_ROOT + reverse("incidents-confirm", args=[confirm_token(subscriber)])
    what = (f"the incident “{subscriber.incident.name}”" if subscriber.incident
            else f"the {settings.SITE_NAME} status page")
    words = (f"Someone asked to send updates about {what} here. Nothing more is sent unless someone who "
             f"can read this confirms: {link}")
    if subscriber.kind == SubscriberKind.SLACK:
        body = {"text": words, "blocks": [{"type": "section", "text": {
            "type": "mrkdwn",
            "text": f"Someone asked to send updates about {what} to this channel.\n"
                    f"<{link}|Confirm the subscription> — nothing more is sent until someone does."}}]}
    else:
        body = {"type": "subscription_confirmation", "confirm_url": link, "message": words,
                "page": {"id": settings.STATUS_PAGE_ID, "url": settings.SITE_ROOT + reverse("incidents-status")}}
    deliver_webhook.delay(subscriber.pk, json.dumps(body, separators=(",", ":")), confirmation=True)


def _page_status() -> dict:
    status = api.status_json(api.all_components(), list(api.public_incidents().unresolved()))
    return {"status_indicator": status["indicator"], "status_description": status["description"]}


# Countdowns stay under the broker's visibility timeout (settings.CELERY_BROKER_TRANSPORT_OPTIONS), else
# a waiting retry is delivered twice; more retries keep the window near the hour it used to be.
@shared_task(acks_late=True, autoretry_for=(OSError,), retry_backoff=30, retry_backoff_max=240, max_retries=16)
def send_notification_email(subscriber_id: int, subject: str, text: str) -> None:
    subscriber = Subscriber.objects.active().filter(pk=subscriber_id, kind=SubscriberKind.EMAIL).first()
    if subscriber is None:
        return  # unsubscribed since the announcement was fanned out
    stop = unsubscribe_url(subscriber)
    body = (f"{text}\n\n--\nYou receive this because you subscribed to {settings.SITE_NAME} status.\n"
            f"Unsubscribe: {stop}\n")
    headers = {"List-Unsubscribe": f"<{stop}>", "List-Unsubscribe-Post": "List-Unsubscribe=One-Click"}
    EmailMessage(subject, body, settings.DEFAULT_FROM_EMAIL, [subscriber.email], headers=headers).send()


@shared_task(bind=True, acks_late=True, autoretry_for=(httpx.HTTPError, WebhookFailed), retry_backoff=10,
             retry_backoff_max=240, retry_jitter=True, max_retries=20)
def deliver_webhook(self, subscriber_id: int, body: str, confirmation: bool = False) -> int | None:
    """POST the JSON body, signed with the subscriber's secret: HMAC-SHA256 of the exact bytes sent.
    Connection errors and 5xx/429 answers are retried with exponential backoff. A target that fails the
    SSRF guard (loopback, private, link-local, unless staff allowed it) is never contacted."""
    # A confirmation goes to a pending subscription; everything else only to confirmed ones.
    subscribers = Subscriber.objects.filter(unsubscribed_at__isnull=True) if confirmation else \
        Subscriber.objects.active()
    subscriber = subscribers.filter(pk=subscriber_id, kind__in=URL_KINDS).first()
    if subscriber is None:
        return None
    data = body.encode()
    headers = {"Content-Type": "application/json", SIGNATURE_HEADER: sign(subscriber.secret, data),
               "User-Agent": f"{settings.SITE_NAME}-status-webhooks", "X-Buildboard-Delivery": self.request.id or ""}
    try:
        response = ssrf.post(subscriber.url, content=data, headers=headers, timeout=10,
                             allow_private=subscriber.allow_private)
        outcome = f"HTTP {response.status_code}"
    except ssrf.UnsafeURL as e:
        Subscriber.objects.filter(pk=subscriber.pk).update(last_delivery_at=timezone.now(),
                                                          last_delivery_status=f"Refused: {e}"[:200])
        return None
    except httpx.HTTPError as e:
        outcome, response = f"{type(e).__name__}: {e}"[:200], None
    attempt = self.request.retries + 1
    Subscriber.objects.filter(pk=subscriber.pk).update(last_delivery_at=timezone.now(),
                                                      last_delivery_status=f"{outcome} (attempt {attempt})")
    if response is None:
        raise WebhookFailed(outcome)
    if response.status_code >= 500 or response.status_code == 429:
        raise WebhookFailed(outcome)
    return response.status_code


@shared_task(acks_late=True)
def transition_maintenance() -> int:
    """Run by Celery beat every minute."""
    return services.maintenance_transition_due()
