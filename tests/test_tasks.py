"""Ingestion tasks: ordering, idempotence, caps, exit codes, build state and announcements."""

from datetime import UTC, datetime

import pytest

from jobs import events, logread, tasks
from jobs.models import Job
from tests.layer import listen, receive

AT = "2017-02-02T12:00:00+00:00"
LATER = "2017-02-02T12:05:00+00:00"

pytestmark = pytest.mark.django_db


def report(job, state, at=AT, **kw):
    tasks.apply_job_state(job.pk, job.attempt, state, at, **kw)
    job.refresh_from_db()
    return job


def test_late_started_event_does_not_reopen_passed_job(job):
    report(job, "passed", at=LATER, exit_code=0)
    report(job, "started", at=AT)
    assert job.state == "passed"
    assert job.started_at == datetime(2017, 2, 2, 12, 0, tzinfo=UTC)


def test_timestamps_already_set_are_not_overwritten(job):
    report(job, "started", at=AT)
    report(job, "started", at=LATER)
    assert job.started_at == datetime(2017, 2, 2, 12, 0, tzinfo=UTC)


def test_canceled_job_stays_canceled(job):
    report(job, "canceled")
    report(job, "passed", exit_code=0)
    assert job.state == "canceled"
    job.build.refresh_from_db()
    assert job.build.state == "canceled"


def test_zero_exit_code_with_failed_state_is_flagged(job):
    report(job, "failed", exit_code=0, worker_version="v2.6.2")
    assert job.inconsistent and job.exit_code == 0 and job.state == "failed"


def test_exit_code_is_taken_from_log_when_worker_sends_none(job):
    tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": "ok\nDone. Your build exited with 0.\n"}])
    report(job, "failed")
    assert job.exit_code == 0
    assert job.inconsistent


def test_workers_exit_code_wins_over_log(job):
    tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": "Done. Your build exited with 0.\n"}])
    report(job, "failed", exit_code=1)
    assert job.exit_code == 1 and not job.inconsistent


def test_duplicate_parts_are_stored_once_and_read_in_order(job):
    tasks.ingest_log_parts(job.pk, 1, [{"number": 2, "content": "c"}, {"number": 0, "content": "a"}])
    tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": "a-again"}, {"number": 1, "content": "b"}])
    job.refresh_from_db()
    assert [p["content"] for p in logread.read_parts(job)] == ["a", "b", "c"]
    assert job.log_persisted_through == 2


def test_persisted_through_stops_at_first_gap(job):
    tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": "a"}, {"number": 2, "content": "c"}])
    job.refresh_from_db()
    assert job.log_persisted_through == 0


def test_log_cap_truncates_with_visible_marker(job, settings):
    settings.LOG_MAX_BYTES = 10
    tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": "12345"}, {"number": 1, "content": "678901"}])
    job.refresh_from_db()
    assert job.log_truncated and job.log_complete
    assert job.log_text().startswith("12345")
    assert "Log truncated" in job.log_text()
    tasks.ingest_log_parts(job.pk, 1, [{"number": 2, "content": "x"}])
    assert job.parts.count() == 1


def test_reports_for_superseded_attempt_are_ignored(job):
    report(job, "failed", exit_code=1)
    assert job.restart()
    tasks.apply_job_state(job.pk, 1, "passed", AT, exit_code=0)
    tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": "old"}])
    job.refresh_from_db()
    assert job.state == "queued" and job.attempt == 2 and job.exit_code is None
    assert job.log_text() == ""


def test_build_state_ignores_allow_failure_jobs(make_build):
    build = make_build(jobs=2, allow_failure=(1,))
    required, optional = build.jobs.order_by("id")
    report(optional, "failed", exit_code=1)
    report(required, "started")
    build.refresh_from_db()
    assert build.state == "running"
    report(required, "passed", exit_code=0)
    build.refresh_from_db()
    assert build.state == "passed" and build.finished_at is not None


def test_build_stays_running_while_a_required_job_is_unfinished(make_build):
    build = make_build(jobs=2)
    first, _ = build.jobs.order_by("id")
    report(first, "failed", exit_code=1)
    build.refresh_from_db()
    assert build.state == "running"


def test_state_change_is_announced_after_commit_with_its_sequence(job, django_capture_on_commit_callbacks):
    channel = listen(events.job_group(job.pk))
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        report(job, "started")
        tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": "hi"}])
    assert callbacks
    first = receive(channel)
    second = receive(channel)
    assert first["type"] == "job.state" and first["state"] == "started" and first["seq"] == Job.objects.get().seq - 1
    assert second["type"] == "log.parts" and [p["number"] for p in second["parts"]] == [0]
