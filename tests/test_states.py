"""The job state machine: forward only, canceled sticky, convergent whatever the order."""

import itertools
from datetime import UTC, datetime, timedelta

import pytest

from jobs import tasks
from jobs.models import Job
from jobs.states import BuildState, JobState, build_state_from, is_inconsistent, next_state, parse_state

T0 = datetime(2017, 2, 2, 12, 0, tzinfo=UTC)


def test_cancelled_spelling_is_accepted():
    assert parse_state("cancelled") == JobState.CANCELED
    assert parse_state("CANCELED") == JobState.CANCELED


def test_unknown_and_internal_states_are_not_reportable():
    assert parse_state("exploded") is None
    assert parse_state("created") is None
    assert parse_state("queued") is None


def test_states_only_move_forward():
    assert next_state(JobState.PASSED, JobState.STARTED) == JobState.PASSED
    assert next_state(JobState.STARTED, JobState.RECEIVED) == JobState.STARTED
    assert next_state(JobState.QUEUED, JobState.STARTED) == JobState.STARTED


def test_canceled_is_sticky():
    for state in (JobState.PASSED, JobState.FAILED, JobState.ERRORED):
        assert next_state(JobState.CANCELED, state) == JobState.CANCELED


@pytest.mark.parametrize(("state", "code", "expected"), [
    ("failed", 0, True), ("errored", 0, True), ("passed", 1, True),
    ("passed", 0, False), ("failed", 1, False), ("canceled", 0, False), ("failed", None, False),
])
def test_inconsistency(state, code, expected):
    assert is_inconsistent(state, code) is expected


def test_build_state_rules():
    assert build_state_from(["passed", "canceled", "failed"]) == BuildState.CANCELED
    assert build_state_from(["passed", "errored", "failed"]) == BuildState.ERRORED
    assert build_state_from(["passed", "failed"]) == BuildState.FAILED
    assert build_state_from(["passed", "passed"]) == BuildState.PASSED
    assert build_state_from(["failed", "started"]) == BuildState.RUNNING
    assert build_state_from(["queued", "queued"]) == BuildState.CREATED


EVENTS = {
    "received": lambda job: tasks.apply_job_state(job.pk, 1, "received", (T0 + timedelta(seconds=1)).isoformat(),
                                                   worker="w1", worker_version="v2.5.0"),
    "started": lambda job: tasks.apply_job_state(job.pk, 1, "started", (T0 + timedelta(seconds=2)).isoformat()),
    "passed": lambda job: tasks.apply_job_state(job.pk, 1, "passed", (T0 + timedelta(seconds=9)).isoformat(),
                                                 exit_code=0),
    "part0": lambda job: tasks.ingest_log_parts(job.pk, 1, [{"number": 0, "content": "hello\n"}]),
    "part1": lambda job: tasks.ingest_log_parts(
        job.pk, 1, [{"number": 1, "content": "Done. Your build exited with 0.\n", "final": True}]),
}


def _snapshot(job: Job) -> tuple:
    job.refresh_from_db()
    return (job.state, job.exit_code, job.inconsistent, job.worker, job.worker_version, job.received_at,
            job.started_at, job.finished_at, job.log_persisted_through, job.log_complete, job.build.state)


@pytest.mark.django_db
def test_every_permutation_of_one_jobs_events_converges(make_build):
    outcomes = set()
    for order in itertools.permutations(EVENTS):
        job = make_build().jobs.get()
        for name in order:
            EVENTS[name](job)
        outcomes.add(_snapshot(job))
    assert len(outcomes) == 1
    (outcome,) = outcomes
    state, code, inconsistent, worker, version, received, started, finished, through, complete, build_state = outcome
    assert (state, code, inconsistent, worker, version) == ("passed", 0, False, "w1", "v2.5.0")
    assert (received, started, finished) == (T0 + timedelta(seconds=1), T0 + timedelta(seconds=2),
                                             T0 + timedelta(seconds=9))
    assert (through, complete, build_state) == (1, True, "passed")


@pytest.mark.django_db
def test_running_the_same_events_twice_changes_nothing(job):
    for name in EVENTS:
        EVENTS[name](job)
    first = _snapshot(job)
    for name in EVENTS:
        EVENTS[name](job)
    assert _snapshot(job) == first
    assert job.parts.count() == 2
