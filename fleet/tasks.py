"""Celery tasks of the fleet: alert evaluation (beat), housekeeping, and staff notifications with retries.

This module is a leaf: it calls alerts, services and notify, and nothing imports it back."""

import smtplib
from datetime import datetime

import httpx
from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.utils import timezone

from . import alerts, notify, rollouts, services
from .models import AlertState

ALERTS_LOCK = "alerts-evaluate-running"


def _lock_seconds(interval: float) -> int:
    """How long a run's "busy" lock lives: two intervals (at least 10 s). Evaluations may overlap safely (the
    database arbitrates), so the lock only spares work; and a worker killed mid-run (kill -9, which runs no
    `finally`) then stalls the next runs by two intervals at most, not a minute."""
    return max(10, int(2 * interval))


def alerts_evaluate_and_notify(*, now: datetime | None = None) -> alerts.Evaluation:
    """One evaluation of every rule, then a notification for each alert that fired or resolved."""
    result = alerts.alerts_evaluate(now=now)
    for alert in result.fired:
        _notify_on_commit(alert.pk, AlertState.FIRING)
    for alert in result.resolved:
        _notify_on_commit(alert.pk, AlertState.RESOLVED)
    return result


def _notify_on_commit(alert_id: int, event: str) -> None:
    transaction.on_commit(lambda: alert_notify.delay(alert_id, event))


@shared_task(acks_late=True)
def alerts_evaluate() -> None:
    """Beat runs this every ALERTS_EVALUATE_SECONDS. A Redis lock skips a run while another is still busy,
    so a slow evaluation does not pile up behind itself (each run looks at the present anyway)."""
    if not cache.add(ALERTS_LOCK, "1", timeout=_lock_seconds(settings.ALERTS_EVALUATE_SECONDS)):
        return
    try:
        alerts_evaluate_and_notify()
    finally:
        cache.delete(ALERTS_LOCK)


ROLLOUTS_LOCK = "rollouts-check-running"


def rollouts_check_and_notify(*, now: datetime | None = None) -> list:
    """Check every active rollout's gates; notify staff of each halt's alert."""
    fired = rollouts.rollouts_check(now=now)
    for alert in fired:
        _notify_on_commit(alert.pk, AlertState.FIRING)
    return fired


@shared_task(acks_late=True)
def rollouts_check() -> None:
    """Beat runs this every ROLLOUT_EVALUATE_SECONDS; like alert evaluation, one run at a time."""
    if not cache.add(ROLLOUTS_LOCK, "1", timeout=_lock_seconds(settings.ROLLOUT_EVALUATE_SECONDS)):
        return
    try:
        rollouts_check_and_notify()
    finally:
        cache.delete(ROLLOUTS_LOCK)


@shared_task(acks_late=True)
def fleet_prune() -> None:
    services.fleet_prune(now=timezone.now())


@shared_task(acks_late=True)
def alert_notify(alert_id: int, event: str) -> None:
    """Fan one alert event out to each configured channel; each channel retries on its own."""
    if settings.ALERT_WEBHOOK_URL:
        alert_send_webhook.delay(alert_id, event)
    if settings.ALERT_EMAIL:
        alert_send_email.delay(alert_id, event)


# Countdowns stay under the broker's visibility timeout (300 s), else a waiting retry is delivered twice.
NOTIFY_RETRY = {"retry_backoff": True, "retry_backoff_max": 240, "max_retries": 12}


@shared_task(acks_late=True, autoretry_for=(httpx.HTTPError, DatabaseError), **NOTIFY_RETRY)
def alert_send_webhook(alert_id: int, event: str) -> None:
    notify.send_webhook(alert_id=alert_id, event=event)


@shared_task(acks_late=True, autoretry_for=(OSError, smtplib.SMTPException, DatabaseError), **NOTIFY_RETRY)
def alert_send_email(alert_id: int, event: str) -> None:
    notify.send_email(alert_id=alert_id, event=event)
