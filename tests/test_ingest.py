"""The log buffer between the API and the database: coalescing, ownership and recovery."""

import json

import pytest

from jobs import ingest, tasks

pytestmark = pytest.mark.django_db


def body(*numbers, content="x"):
    return json.dumps({"parts": [{"number": n, "content": f"{content}{n}"} for n in numbers]}).encode()


def test_one_flush_stores_many_buffered_requests_in_one_round(job):
    token = ingest.buffer_parts(job.pk, 1, body(0, 1))
    assert token is not None
    assert ingest.buffer_parts(job.pk, 1, body(2)) is None  # a flush is already scheduled
    assert ingest.buffer_parts(job.pk, 1, body(3, 4)) is None
    rounds = []

    def store(job_id, batches):
        rounds.append(batches)
        tasks.store_log_parts(job_id, batches)

    ingest.drain(job.pk, token, store)
    assert len(rounds) == 1 and len(rounds[0]) == 3
    job.refresh_from_db()
    assert job.log_persisted_through == 4
    assert ingest.buffer_parts(job.pk, 1, body(5)) is not None  # ownership was released


def test_a_drainer_without_the_token_leaves_the_buffer_alone(job):
    token = ingest.buffer_parts(job.pk, 1, body(0))
    ingest.drain(job.pk, "someone-else", tasks.store_log_parts)
    assert not job.parts.exists()
    tasks.flush_log_parts(job.pk, token)
    assert job.parts.count() == 1


def test_parts_stay_buffered_when_storing_fails(job):
    token = ingest.buffer_parts(job.pk, 1, body(0))

    def failing_store(job_id, batches):
        raise RuntimeError("database went away")

    with pytest.raises(RuntimeError):
        ingest.drain(job.pk, token, failing_store)
    tasks.flush_log_parts(job.pk, token)  # the retry
    assert list(job.parts.values_list("content", flat=True)) == ["x0"]


def test_sweep_reschedules_a_buffer_whose_flush_was_lost(job):
    ingest.buffer_parts(job.pk, 1, body(0, 1))
    ingest._redis().delete(ingest._owner_key(job.pk))  # its worker died and the lock expired
    assert job.pk in ingest.orphaned_jobs()
    assert tasks.sweep_log_buffers() >= 1
    job.refresh_from_db()
    assert job.log_persisted_through == 1
    assert job.pk not in ingest.orphaned_jobs()


def test_buffered_parts_of_a_superseded_attempt_are_dropped(job):
    tasks.apply_job_state(job.pk, 1, "failed", "2017-02-02T12:00:00+00:00")
    token = ingest.buffer_parts(job.pk, 1, body(0, content="old"))
    job.refresh_from_db()
    assert job.restart()
    tasks.flush_log_parts(job.pk, token)
    assert not job.parts.exists()
