"""Alert lifecycle: one open alert per rule and subject, timed auto-resolve, notifications with retries."""

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.core.cache import cache
from django.db import IntegrityError, close_old_connections, transaction
from django.utils import timezone

from buildboard import celery_app
from fleet import alerts, tasks
from fleet.models import Alert, AlertNotification, AlertRule, AlertState
from jobs.models import Job
from jobs.services import jobs_error_stale
from jobs.states import JobState


def test_failure_rate_test_matches_the_textbook_z_test():
    z, p = alerts.failure_rate_test(10, 50, 5, 100)  # 20% against 5%
    assert z == pytest.approx(2.8868, abs=1e-4)
    assert p == pytest.approx(0.001946, abs=1e-5)
    assert alerts.failure_rate_test(5, 100, 10, 50)[1] > 0.99  # one-sided: a lower rate is no alarm
    assert alerts.failure_rate_test(0, 50, 0, 100) == (0.0, 1.0)  # no failures anywhere: nothing to test


def _queued_job(make_build, minutes_ago: float) -> Job:
    job = make_build().jobs.get()
    Job.objects.filter(pk=job.pk).update(queued_at=timezone.now() - timedelta(minutes=minutes_ago))
    return job


@pytest.mark.django_db
def test_database_allows_one_open_alert_per_rule_and_subject():
    Alert.objects.create(rule="capacity_low", subject="builds.linux", title="t")
    Alert.objects.create(rule="capacity_low", subject="builds.linux", title="t", state=AlertState.RESOLVED)
    with pytest.raises(IntegrityError), transaction.atomic():
        Alert.objects.create(rule="capacity_low", subject="builds.linux", title="t", state=AlertState.ACKNOWLEDGED)
    Alert.objects.create(rule="capacity_low", subject="builds.mac", title="t")


@pytest.mark.django_db
def test_alert_fires_once_refreshes_while_the_condition_holds_and_resolves_after_it_clears(make_build):
    job = _queued_job(make_build, minutes_ago=16)
    now = timezone.now()
    first = alerts.alerts_evaluate(now=now)
    assert [a.rule for a in first.fired] == ["queued_too_long"]
    alert = first.fired[0]
    assert alert.evidence["count"] == 1 and alert.evidence["jobs"][0]["url"] == f"/jobs/{job.pk}/"
    assert alert.onset_at == Job.objects.get(pk=job.pk).queued_at
    assert not alerts.alerts_evaluate(now=now + timedelta(seconds=30)).fired  # same condition, same alert

    Job.objects.filter(pk=job.pk).update(state=JobState.STARTED)  # the job got a worker
    assert not alerts.alerts_evaluate(now=now + timedelta(minutes=5)).resolved  # clear for 4.5 min only
    result = alerts.alerts_evaluate(now=now + timedelta(minutes=5, seconds=30))
    assert [a.pk for a in result.resolved] == [alert.pk]
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED and alert.resolution == "condition clear for 5 minutes"
    assert alert.resolved_at == now + timedelta(minutes=5, seconds=30)

    _queued_job(make_build, minutes_ago=20)  # a new episode is a new alert, the old one stays history
    again = alerts.alerts_evaluate(now=now + timedelta(minutes=6))
    assert len(again.fired) == 1 and again.fired[0].pk != alert.pk
    assert Alert.objects.filter(rule="queued_too_long").count() == 2


@pytest.mark.django_db
def test_a_condition_returning_before_the_clear_period_keeps_the_same_alert(make_build):
    job = _queued_job(make_build, minutes_ago=16)
    now = timezone.now()
    alerts.alerts_evaluate(now=now)
    Job.objects.filter(pk=job.pk).update(state=JobState.STARTED)
    alerts.alerts_evaluate(now=now + timedelta(minutes=2))
    _queued_job(make_build, minutes_ago=30)
    assert not alerts.alerts_evaluate(now=now + timedelta(minutes=4)).fired
    assert Alert.objects.get().state == AlertState.FIRING


@pytest.mark.django_db
def test_disabling_a_rule_resolves_its_open_alerts(make_build):
    _queued_job(make_build, minutes_ago=16)
    alerts.alerts_evaluate()
    AlertRule.objects.filter(kind="queued_too_long").update(enabled=False)
    alerts.alerts_evaluate()
    assert Alert.objects.get().resolution == "rule disabled"


@pytest.mark.django_db
def test_stale_sweep_rechecks_each_job_so_fresh_activity_wins(make_build):
    jobs = list(make_build(jobs=2).jobs.order_by("id"))
    long_ago = timezone.now() - timedelta(minutes=45)
    Job.objects.filter(pk__in=[j.pk for j in jobs]).update(state=JobState.STARTED, last_activity_at=long_ago)
    Job.objects.filter(pk=jobs[1].pk).update(last_activity_at=timezone.now())  # a log part just arrived
    assert jobs_error_stale(now=timezone.now(), minutes=30) == [jobs[0].pk]
    assert jobs_error_stale(now=timezone.now(), minutes=30) == []  # idempotent
    jobs[0].refresh_from_db()
    assert jobs[0].state == JobState.ERRORED and jobs[0].finished_at is not None
    assert jobs[0].build.state == "running"  # the other job still runs


@pytest.mark.django_db(transaction=True)
def test_concurrent_evaluations_open_a_single_alert(make_build):
    _queued_job(make_build, minutes_ago=16)
    barrier = threading.Barrier(4)
    results, errors = [], []

    def evaluate():
        try:
            barrier.wait()
            results.append(alerts.alerts_evaluate())
        except Exception as e:  # surfaced below
            errors.append(e)
        finally:
            close_old_connections()

    threads = [threading.Thread(target=evaluate) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert Alert.objects.filter(rule="queued_too_long").count() == 1
    assert sum(len(r.fired) for r in results) == 1


class Receiver(BaseHTTPRequestHandler):
    """A Slack-style webhook receiver on loopback; fails the first `failures` deliveries with 500."""

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        server = self.server
        server.attempts += 1
        status = 500 if server.attempts <= server.failures else 200
        if status == 200:
            server.received.append(body)
        self.send_response(status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver(settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    server.received, server.attempts, server.failures = [], 0, 0
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.ALERT_WEBHOOK_URL = f"http://127.0.0.1:{server.server_port}/hook"
    yield server
    server.shutdown()


@pytest.mark.django_db
def test_staff_are_notified_by_webhook_and_email_when_an_alert_fires_and_resolves(
        make_build, receiver, alice, bob, django_capture_on_commit_callbacks):
    job = _queued_job(make_build, minutes_ago=16)
    now = timezone.now()
    with django_capture_on_commit_callbacks(execute=True):
        alert = tasks.alerts_evaluate_and_notify(now=now).fired[0]
    (fired,) = receiver.received
    assert fired["text"].startswith("FIRING: 1 job(s) on builds.linux queued longer than 15 minutes")
    assert f"/alerts/{alert.pk}/|View alert>" in fired["text"]
    assert fired["blocks"][0]["type"] == "section"
    (email,) = mail.outbox
    assert email.to == ["alice@example.com"]  # staff only: bob is not
    assert "FIRING" in email.subject and f"/alerts/{alert.pk}/" in email.body

    Job.objects.filter(pk=job.pk).update(state=JobState.STARTED)
    with django_capture_on_commit_callbacks(execute=True):
        tasks.alerts_evaluate_and_notify(now=now + timedelta(minutes=6))
    assert receiver.received[1]["text"].startswith("RESOLVED:")
    assert "Resolved: condition clear for 5 minutes" in mail.outbox[1].body

    tasks.alert_notify.delay(alert.pk, "firing")  # a redelivered task sends nothing twice
    assert len(receiver.received) == 2 and len(mail.outbox) == 2
    assert AlertNotification.objects.filter(alert=alert).count() == 4


@pytest.mark.django_db
def test_webhook_delivery_is_retried_until_the_receiver_accepts(receiver, monkeypatch):
    # Eagerly run tasks retry inline, but only if the Retry is not propagated as an error.
    monkeypatch.setattr(celery_app.conf, "task_eager_propagates", False)
    receiver.failures = 2
    alert = Alert.objects.create(rule="capacity_low", subject="q", title="Capacity <low> & short", summary="s")
    tasks.alert_send_webhook.delay(alert.pk, "firing")
    assert receiver.attempts == 3
    assert receiver.received[0]["text"].startswith("FIRING: Capacity &lt;low&gt; &amp; short")
    assert AlertNotification.objects.filter(alert=alert, channel="webhook").exists()


@pytest.mark.django_db
def test_a_failing_rule_does_not_silence_the_others(make_build, monkeypatch):
    _queued_job(make_build, minutes_ago=16)

    def broken(self, p, now):
        raise RuntimeError("bug in a rule")

    monkeypatch.setattr(alerts.InconsistentJobs, "evaluate", broken)
    assert [a.rule for a in alerts.alerts_evaluate().fired] == ["queued_too_long"]


@pytest.mark.django_db
@pytest.mark.parametrize(("task", "lock", "interval", "setting"), [
    ("alerts_evaluate", tasks.ALERTS_LOCK, 3, "ALERTS_EVALUATE_SECONDS"),
    ("alerts_evaluate", tasks.ALERTS_LOCK, 30, "ALERTS_EVALUATE_SECONDS"),
    ("rollouts_check", tasks.ROLLOUTS_LOCK, 3, "ROLLOUT_EVALUATE_SECONDS"),
])
def test_a_run_killed_mid_evaluation_stalls_the_next_ones_two_intervals_at_most(
        settings, monkeypatch, task, lock, interval, setting):
    """kill -9 runs no `finally`: the busy lock of the dead run must expire soon, or alerting stops meanwhile."""
    setattr(settings, setting, interval)
    redis_client = cache._cache.get_client()
    seen = []

    def killed(**kwargs):
        seen.append(redis_client.ttl(cache.make_and_validate_key(lock)))
        raise KeyboardInterrupt  # stands in for the kill: the lock is deleted by `finally`, so read it first

    monkeypatch.setattr(tasks, "alerts_evaluate_and_notify", killed)
    monkeypatch.setattr(tasks, "rollouts_check_and_notify", killed)
    with pytest.raises(KeyboardInterrupt):
        getattr(tasks, task)()
    assert 0 < seen[0] <= max(10, 2 * interval)
    assert cache.add(lock, "1", timeout=1)  # and this run's `finally` freed it
