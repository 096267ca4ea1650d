"""Alert notifications to staff: a Slack-compatible webhook and email. Called by Celery tasks with retries.

Each (alert, channel, event) is sent once: the row recording it is written after a successful send, so a
retried or redelivered task skips what already went out (at worst one duplicate after a crash)."""

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail

from .models import Alert, AlertNotification

WEBHOOK_TIMEOUT = 10


def _already_sent(alert_id: int, channel: str, event: str) -> bool:
    return AlertNotification.objects.filter(alert_id=alert_id, channel=channel, event=event).exists()


def _mark_sent(alert_id: int, channel: str, event: str) -> None:
    AlertNotification.objects.get_or_create(alert_id=alert_id, channel=channel, event=event)


def alert_link(alert: Alert) -> str:
    return settings.SITE_ROOT + alert.get_absolute_url()


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn treats &, < and > as control characters; everything else passes through.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(alert: Alert, event: str) -> dict:
    """JSON that Slack incoming webhooks (and the many receivers copying them) accept: text plus blocks."""
    headline = f"{event.upper()}: {alert.title}"
    link = alert_link(alert)
    text = f"{_slack_escape(headline)}\n{_slack_escape(alert.summary)}\n<{link}|View alert>"
    return {
        "text": text,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{_slack_escape(headline)}*"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": _slack_escape(alert.summary)[:2900]}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": (
                f"rule `{alert.rule}` · subject `{_slack_escape(alert.subject)}` · <{link}|View alert>")}]},
        ],
    }


def send_webhook(*, alert_id: int, event: str) -> None:
    alert = Alert.objects.filter(pk=alert_id).first()
    if alert is None or not settings.ALERT_WEBHOOK_URL or _already_sent(alert_id, "webhook", event):
        return
    response = httpx.post(settings.ALERT_WEBHOOK_URL, json=webhook_payload(alert, event), timeout=WEBHOOK_TIMEOUT)
    response.raise_for_status()  # an httpx error makes the task retry with backoff
    _mark_sent(alert_id, "webhook", event)


def staff_emails() -> list[str]:
    users = get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="")
    return sorted(set(users.values_list("email", flat=True)))


def email_body(alert: Alert, event: str) -> str:
    lines = [f"{event.upper()}: {alert.title}", "", alert.summary, ""]
    for key, value in alert.evidence.items():
        if isinstance(value, str | int | float):
            lines.append(f"  {key}: {value}")
    lines += ["", f"Alert: {alert_link(alert)}"]
    if event == "resolved":
        lines.insert(2, f"Resolved: {alert.resolution}")
    return "\n".join(lines)


def send_email(*, alert_id: int, event: str) -> None:
    alert = Alert.objects.filter(pk=alert_id).first()
    recipients = staff_emails()
    if alert is None or not recipients or _already_sent(alert_id, "email", event):
        return
    send_mail(f"[{settings.SITE_NAME}] {event.upper()}: {alert.title}", email_body(alert, event),
              settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    _mark_sent(alert_id, "email", event)
