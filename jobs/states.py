"""Job and build states, and the pure rules that move between them."""

from django.db import models


class JobState(models.TextChoices):
    CREATED = "created"
    QUEUED = "queued"
    RECEIVED = "received"
    STARTED = "started"
    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"
    CANCELED = "canceled"


class BuildState(models.TextChoices):
    CREATED = "created"
    RUNNING = "running"
    PASSED = "passed"
    FAILED = "failed"
    ERRORED = "errored"
    CANCELED = "canceled"


FINAL_STATES = (JobState.PASSED, JobState.FAILED, JobState.ERRORED, JobState.CANCELED)
ACTIVE_STATES = (JobState.CREATED, JobState.QUEUED, JobState.RECEIVED, JobState.STARTED)
REPORTABLE_STATES = (JobState.RECEIVED, JobState.STARTED, *FINAL_STATES)

# States only move forward. Among final states the more severe wins, so that any order of the
# same events converges: canceled is sticky, then errored, failed, passed.
RANK = {
    JobState.CREATED: 0,
    JobState.QUEUED: 1,
    JobState.RECEIVED: 2,
    JobState.STARTED: 3,
    JobState.PASSED: 4,
    JobState.FAILED: 5,
    JobState.ERRORED: 6,
    JobState.CANCELED: 7,
}

# Which timestamp a reported state sets (once, never overwritten).
TIMESTAMP_FOR = {
    JobState.RECEIVED: "received_at",
    JobState.STARTED: "started_at",
    JobState.PASSED: "finished_at",
    JobState.FAILED: "finished_at",
    JobState.ERRORED: "finished_at",
    JobState.CANCELED: "finished_at",
}


def parse_state(value: str) -> JobState | None:
    """Map a worker's state word to a JobState; accepts the British "cancelled"."""
    value = value.strip().lower()
    if value == "cancelled":
        value = JobState.CANCELED
    if value in REPORTABLE_STATES:
        return JobState(value)
    return None


def next_state(current: str, reported: str) -> str:
    """The state after `reported` arrives in `current`: the higher-ranked of the two."""
    return reported if RANK[JobState(reported)] > RANK[JobState(current)] else current


def is_inconsistent(state: str, exit_code: int | None) -> bool:
    """A finished job whose state contradicts its exit code (the 2017 Travis failure mode)."""
    if exit_code is None:
        return False
    if exit_code == 0:
        return state in (JobState.FAILED, JobState.ERRORED)
    return state == JobState.PASSED


def build_state_from(job_states: list[str]) -> str:
    """A build's state from its required jobs' states."""
    if not job_states:
        return BuildState.CREATED
    if any(s not in FINAL_STATES for s in job_states):
        if all(s in (JobState.CREATED, JobState.QUEUED) for s in job_states):
            return BuildState.CREATED
        return BuildState.RUNNING
    for final in (JobState.CANCELED, JobState.ERRORED, JobState.FAILED):
        if final in job_states:
            return final
    return BuildState.PASSED
