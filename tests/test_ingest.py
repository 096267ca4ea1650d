"""The log buffer between the API and the database: coalescing, ownership, recovery and poison."""

import json

import pytest
import redis
from django.db import DataError, OperationalError, connection

from jobs import ingest, tasks
from jobs.models import DeadLetter

pytestmark = pytest.mark.django_db


def body(*numbers, content="x"):
    return json.dumps({"parts": [{"number": n, "content": f"{content}{n}"} for n in numbers]}).encode()


def drain(job_id, token, store=tasks.store_log_parts):
    return ingest.drain(job_id, token, store, tasks.set_aside_log_parts)


def test_one_flush_stores_many_buffered_requests_in_one_round(job):
    token = ingest.buffer_parts(job.pk, 1, body(0, 1))
    assert token is not None
    assert ingest.buffer_parts(job.pk, 1, body(2)) is None  # a flush is already scheduled
    assert ingest.buffer_parts(job.pk, 1, body(3, 4)) is None
    rounds = []

    def store(job_id, batches):
        rounds.append(batches)
        tasks.store_log_parts(job_id, batches)

    assert drain(job.pk, token, store) == ingest.DONE
    assert len(rounds) == 1 and len(rounds[0]) == 3
    job.refresh_from_db()
    assert job.log_persisted_through == 4
    assert ingest.buffer_parts(job.pk, 1, body(5)) is not None  # ownership was released


def test_a_drainer_without_the_token_leaves_the_buffer_alone(job):
    token = ingest.buffer_parts(job.pk, 1, body(0))
    assert drain(job.pk, "someone-else") == ingest.LOST
    assert not job.parts.exists()
    tasks.flush_log_parts(job.pk, token)
    assert job.parts.count() == 1


def test_a_redelivered_flush_task_leaves_while_the_first_one_owns_the_buffer(job):
    token = ingest.buffer_parts(job.pk, 1, body(0))
    first = ingest.own(job.pk, token)
    assert first is not None and first != token
    assert ingest.own(job.pk, token) is None  # the copy of the same task message
    assert drain(job.pk, first) == ingest.DONE
    assert job.parts.count() == 1


def test_the_owner_lease_is_short_and_renewed_every_round(job, settings, monkeypatch):
    settings.LOG_OWNER_LEASE_SECONDS = 7
    monkeypatch.setattr(ingest, "ROUND_ITEMS", 1)
    token = ingest.buffer_parts(job.pk, 1, body(0))
    ingest.buffer_parts(job.pk, 1, body(1))
    ingest.buffer_parts(job.pk, 1, body(2))
    r = ingest._redis()
    assert 0 < r.ttl(ingest._owner_key(job.pk)) <= 7
    ttls = []

    def store(job_id, batches):
        ttls.append(r.ttl(ingest._owner_key(job_id)))
        tasks.store_log_parts(job_id, batches)
        r.expire(ingest._owner_key(job_id), 2)  # as if the round had taken five seconds

    r.expire(ingest._owner_key(job.pk), 2)
    assert drain(job.pk, token, store) == ingest.DONE
    assert len(ttls) == 3 and all(ttl > 2 for ttl in ttls)  # renewed before each round began
    assert not r.exists(ingest._owner_key(job.pk))  # and let go once the list was empty


def test_a_drain_loads_its_scripts_again_when_redis_has_lost_them(job):
    token = ingest.buffer_parts(job.pk, 1, body(0, 1))
    ingest._redis().script_flush()  # as after a restart of Redis
    assert drain(job.pk, token) == ingest.DONE
    job.refresh_from_db()
    assert job.log_persisted_through == 1
    assert ingest.pending(job.pk) == 0


def test_parts_stay_buffered_when_storing_fails(job):
    token = ingest.buffer_parts(job.pk, 1, body(0))

    def failing_store(job_id, batches):
        raise OperationalError("database went away")

    with pytest.raises(OperationalError):
        drain(job.pk, token, failing_store)
    tasks.flush_log_parts(job.pk, token)  # the retry
    assert list(job.parts.values_list("content", flat=True)) == ["x0"]
    assert not DeadLetter.objects.exists()


@pytest.mark.parametrize("error", [OperationalError("server closed the connection"),
                                   redis.ConnectionError("Connection refused")])
def test_flush_retries_database_and_redis_errors_in_place_with_backoff(job, error):
    token = ingest.buffer_parts(job.pk, 1, body(0, 1))
    failures, sleeps = [error, error, error], []

    def flaky_store(job_id, batches):
        if failures:
            raise failures.pop()
        tasks.store_log_parts(job_id, batches)

    outcome, _ = ingest.flush(job.pk, token, flaky_store, tasks.set_aside_log_parts, sleep=sleeps.append)
    assert outcome == ingest.DONE
    assert sleeps == [0.25, 0.5, 1.0]
    job.refresh_from_db()
    assert job.log_persisted_through == 1


def test_flush_gives_up_after_a_while_and_leaves_the_parts_for_the_sweep(job):
    token = ingest.buffer_parts(job.pk, 1, body(0))

    def down(job_id, batches):
        raise OperationalError("still down")

    outcome, _ = ingest.flush(job.pk, token, down, tasks.set_aside_log_parts, retry_seconds=0, sleep=lambda s: None)
    assert outcome == ingest.LOST
    assert ingest.pending(job.pk) == 1


def test_a_long_drain_hands_over_to_a_fresh_task(job, monkeypatch):
    monkeypatch.setattr(ingest, "ROUND_ITEMS", 1)
    token = ingest.buffer_parts(job.pk, 1, body(0))
    ingest.buffer_parts(job.pk, 1, body(1))
    outcome, handover = ingest.flush(job.pk, token, tasks.store_log_parts, tasks.set_aside_log_parts)
    assert outcome == ingest.DONE  # well within DRAIN_SECONDS
    token = ingest.buffer_parts(job.pk, 1, body(2))
    ingest.buffer_parts(job.pk, 1, body(3))
    assert ingest.drain(job.pk, token, tasks.store_log_parts, tasks.set_aside_log_parts, seconds=0) == ingest.MORE
    tasks.flush_log_parts(job.pk, token)  # what the handover runs
    job.refresh_from_db()
    assert job.log_persisted_through == 3


def test_sweep_reschedules_a_buffer_whose_owner_died(job):
    ingest.buffer_parts(job.pk, 1, body(0, 1))
    ingest._redis().delete(ingest._owner_key(job.pk))  # its worker died and the lease ran out
    assert job.pk in ingest.orphaned_jobs()
    assert tasks.sweep_log_buffers() >= 1
    job.refresh_from_db()
    assert job.log_persisted_through == 1
    assert job.pk not in ingest.orphaned_jobs()


def test_sweep_leaves_a_buffer_with_a_live_owner(job):
    ingest.buffer_parts(job.pk, 1, body(0))
    assert job.pk not in ingest.orphaned_jobs()


def test_buffered_parts_of_a_superseded_attempt_are_dropped(job):
    tasks.apply_job_state(job.pk, 1, "failed", "2017-02-02T12:00:00+00:00")
    token = ingest.buffer_parts(job.pk, 1, body(0, content="old"))
    job.refresh_from_db()
    assert job.restart()
    tasks.flush_log_parts(job.pk, token)
    assert not job.parts.exists()


def test_a_full_backlog_is_refused(job, settings):
    settings.LOG_BUFFER_MAX_ITEMS = 2
    ingest.buffer_parts(job.pk, 1, body(0))
    ingest.buffer_parts(job.pk, 1, body(1))
    with pytest.raises(ingest.BufferFull):
        ingest.buffer_parts(job.pk, 1, body(2))
    assert ingest.pending(job.pk) == 2


def test_a_poison_part_is_set_aside_and_the_later_parts_are_stored(job):
    """A NUL slipped past validation (say, from an older API process): PostgreSQL refuses it on every try."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite stores NUL; the poison path on any database is covered by the next test")
    token = ingest.buffer_parts(job.pk, 1, body(0))
    ingest.buffer_parts(job.pk, 1, json.dumps({"parts": [{"number": 1, "content": "bad\x00"},
                                                         {"number": 2, "content": "fine"}]}).encode())
    ingest.buffer_parts(job.pk, 1, body(3))
    tasks.flush_log_parts(job.pk, token)
    job.refresh_from_db()
    assert job.log_persisted_through == 3 and ingest.pending(job.pk) == 0
    contents = dict(job.parts.values_list("number", "content"))
    assert contents[0] == "x0" and contents[2] == "fine" and contents[3] == "x3"
    assert "Part 1 of this log could not be stored" in contents[1]
    letter = DeadLetter.objects.get()
    assert (letter.job_id, letter.attempt, letter.number) == (job.pk, 1, 1)
    assert json.loads(bytes(letter.payload))["content"] == "bad\x00"
    assert letter.error


def test_an_unreadable_item_is_set_aside_whole(job):
    token = ingest.buffer_parts(job.pk, 1, b"{not json")
    ingest.buffer_parts(job.pk, 1, body(0))
    tasks.flush_log_parts(job.pk, token)
    job.refresh_from_db()
    assert job.log_persisted_through == 0 and ingest.pending(job.pk) == 0
    letter = DeadLetter.objects.get()
    assert bytes(letter.payload) == b"1\n{not json" and letter.number is None
    assert "JSONDecodeError" in letter.error


def test_persistence_check_tells_aof_from_no_aof(settings):
    class FakeRedis:
        def __init__(self, aof, fsync="everysec"):
            self.aof, self.fsync = aof, fsync

        def info(self, section):
            return {"aof_enabled": self.aof}

        def config_get(self, name):
            return {"appendfsync": self.fsync}

    assert ingest.persistence_problem(FakeRedis(1)) is None
    assert ingest.persistence_problem(FakeRedis(1, "always")) is None
    assert "appendfsync no" in ingest.persistence_problem(FakeRedis(1, "no"))
    assert "without AOF" in ingest.persistence_problem(FakeRedis(0))


def test_the_test_redis_runs_with_aof():
    assert ingest.persistence_problem() is None


def test_stored_parts_keep_every_character_as_sent(job):
    """On PostgreSQL parts are written with COPY, whose text format has its own escapes."""
    contents = ["tab\there\\back\\slash\r\n", "\\.\n\\N\n", "ünïcødé ✓ 🚀\x1b[31mred\x1b[0m\n", "", "end\\"]
    tasks.store_log_parts(job.pk, [(job.attempt, [{"number": n, "content": c, "final": n == 4}
                                                  for n, c in enumerate(contents)])])
    stored = list(job.parts.order_by("number").values_list("number", "content", "final", "attempt"))
    assert stored == [(n, c, n == 4, job.attempt) for n, c in enumerate(contents)]
    job.refresh_from_db()
    assert job.log_persisted_through == 4 and job.log_final_number == 4
    assert job.log_bytes == sum(len(c.encode()) for c in contents)


def test_a_database_error_while_storing_parts_is_django_s_as_the_drain_expects(job):
    """The drain retries Django's OperationalError and sets other errors' parts aside; the PostgreSQL COPY
    must raise Django's errors like every query does."""
    from django.db import IntegrityError, transaction

    from jobs.models import LogPart

    tasks.store_log_parts(job.pk, [(job.attempt, [{"number": 0, "content": "a"}])])
    with pytest.raises(IntegrityError), transaction.atomic():
        LogPart.insert([LogPart(job=job, attempt=job.attempt, number=0, content="again")])
    if connection.vendor == "postgresql":  # which cannot keep a NUL in text; it says so in words
        with pytest.raises(DataError, match="NUL"), transaction.atomic():
            LogPart.insert([LogPart(job=job, attempt=job.attempt, number=1, content="a\x00b")])
