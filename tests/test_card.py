"""The job card (jobs/card.py): the worker's log POST answers from Redis, and no late or lost write can
take the card back to an older attempt or an older log progress."""

import pytest

from jobs import card, ingest
from jobs.models import Job

pytestmark = pytest.mark.django_db


def post(client, url, body, auth):
    return client.post(url, body, content_type="application/json", headers=auth)


def key(job) -> str:
    return card._key(job.pk)


def fields(job) -> dict:
    return {k.decode(): v.decode() for k, v in ingest._redis().hgetall(key(job)).items()}


def test_the_first_post_fills_the_card_and_later_posts_answer_from_it(client, auth, job):
    url = f"/api/v1/jobs/{job.pk}/log"
    assert post(client, url, {"parts": [{"number": 0, "content": "a"}]}, auth).status_code == 202
    assert fields(job) == {"attempt": "1", "cancel": "0", "truncated": "0", "bytes": "1", "persisted": "0",
                           "queue": "builds.linux", "owner": "acme", "name": "rocket"}
    assert 0 < ingest._redis().ttl(key(job)) <= card.CARD_SECONDS
    # Changed behind the card's back (no commit hook ran): the POST answers what the card says (part 0
    # stored; an answer tells the progress from before its own parts), not what the row says.
    Job.objects.filter(pk=job.pk).update(log_persisted_through=41)
    assert post(client, url, {"parts": [{"number": 1, "content": "b"}]}, auth).json()["persisted_through"] == 0
    # Once the card is gone, the database answers again.
    ingest._redis().delete(key(job))
    assert post(client, url, {"parts": [{"number": 2, "content": "c"}]}, auth).json()["persisted_through"] == 41


def test_a_state_report_reads_the_database_and_fills_the_card_for_the_log_posts(client, auth, job):
    """A worker reports "started" before its first log part: that read of the job fills the card, so the
    first log POST answers from Redis like every later one."""
    card._facts.pop(job.pk, None)
    url = f"/api/v1/jobs/{job.pk}/state"
    assert post(client, url, {"state": "started"}, auth).json() == {"cancel": False}
    assert fields(job) == {"attempt": "1", "cancel": "0", "truncated": "0", "bytes": "0", "persisted": "-1",
                           "queue": "builds.linux", "owner": "acme", "name": "rocket"}
    assert card.facts(job.pk) == ("builds.linux", "acme", "rocket")
    # The state POST answers from the row, whatever the card says.
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    assert post(client, url, {"state": "started"}, auth).json() == {"cancel": True}
    assert fields(job)["cancel"] == "1"


def test_a_cancel_and_a_restart_reach_the_card(client, auth, job):
    url = f"/api/v1/jobs/{job.pk}"
    post(client, f"{url}/log", {"parts": [{"number": 0, "content": "first"}]}, auth)
    assert post(client, f"{url}/cancel", {}, auth).status_code == 202
    assert post(client, f"{url}/log", {"parts": [{"number": 1, "content": "x"}]}, auth).json()["cancel"] is True
    post(client, f"{url}/state", {"state": "canceled"}, auth)
    assert post(client, f"{url}/restart", {}, auth).status_code == 202
    # Without naming an attempt, the parts go to the new one (the card did not keep attempt 1).
    ack = post(client, f"{url}/log", {"parts": [{"number": 0, "content": "second"}]}, auth).json()
    assert ack == {"cancel": False, "persisted_through": -1}  # as before this part was stored
    assert fields(job)["attempt"] == "2"
    assert client.get(f"/jobs/{job.pk}/log.txt").getvalue() == b"second"


def test_a_card_behind_a_restart_is_checked_against_the_database(client, auth, job):
    """A restart's card write was lost (say Redis was away): a POST naming the new attempt asks the
    database, and one naming the old attempt is refused as before."""
    url = f"/api/v1/jobs/{job.pk}"
    post(client, f"{url}/log", {"parts": [{"number": 0, "content": "first"}]}, auth)
    post(client, f"{url}/state", {"state": "failed", "exit_code": 1}, auth)
    stale = ingest._redis().hgetall(key(job))
    post(client, f"{url}/restart", {}, auth)
    ingest._redis().hset(key(job), mapping=stale)  # as if the restart never reached the card
    assert post(client, f"{url}/log", {"attempt": 2, "parts": [{"number": 0, "content": "ok"}]},
                auth).status_code == 202
    assert fields(job)["attempt"] == "2"
    assert post(client, f"{url}/log", {"attempt": 1, "parts": [{"number": 1, "content": "x"}]},
                auth).status_code == 409


@pytest.mark.parametrize(("write", "expected"), [
    # (attempt, cancel, truncated, bytes, persisted) merged into a card of attempt 2 with 0, 0, 100, 5
    ((1, 1, 1, 999, 99), ("2", "0", "0", "100", "5")),  # an older attempt changes nothing
    ((2, 0, 0, 50, 3), ("2", "0", "0", "100", "5")),  # a late write of the same attempt moves nothing back
    ((2, 1, 0, 120, 7), ("2", "1", "0", "120", "7")),  # news moves it on
    ((3, 0, 0, 0, -1), ("3", "0", "0", "0", "-1")),  # a newer attempt starts over
])
def test_writes_merge_so_late_ones_move_nothing_back(job, write, expected):
    card._update(job.pk, [2, 0, 0, 100, 5, card.CARD_SECONDS, "q", "o", "n"])
    card._update(job.pk, [*write, card.CARD_SECONDS])
    got = fields(job)
    assert (got["attempt"], got["cancel"], got["truncated"], got["bytes"], got["persisted"]) == expected
    assert (got["queue"], got["owner"], got["name"]) == ("q", "o", "n")


def test_an_update_alone_makes_no_card_a_post_can_use(job):
    """A restart's update may come before any POST: the card it leaves has no queue, so the next POST
    still fills it from the database, and that fill cannot take the attempt back."""
    card._update(job.pk, [2, 0, 0, 0, -1, card.CARD_SECONDS])
    assert fields(job)["attempt"] == "2" and "queue" not in fields(job)
    from asgiref.sync import async_to_sync

    assert async_to_sync(card.read)(job.pk) is None
    filled = card.fill_from_database(job.pk)  # the row still says attempt 1 (the restart "is not committed")
    assert filled.attempt == 1
    assert fields(job)["attempt"] == "2"  # the card kept the newer attempt


def test_a_job_this_process_knows_is_checked_from_memory_and_pushed_in_one_round_trip(client, auth, job,
                                                                                     monkeypatch):
    url = f"/api/v1/jobs/{job.pk}/log"
    assert post(client, url, {"parts": [{"number": 0, "content": "a"}]}, auth).status_code == 202
    assert card.facts(job.pk) == ("builds.linux", "acme", "rocket")

    async def no_separate_read(job_id):
        raise AssertionError("the card was read apart from the push")

    monkeypatch.setattr(card, "read", no_separate_read)
    assert post(client, url, {"parts": [{"number": 1, "content": "b"}]}, auth).json() == {
        "cancel": False, "persisted_through": 0}
    assert ingest._redis().llen(ingest._buffer_key(job.pk)) == 0  # stored (the eager flush ran)
    assert [p.number for p in job.parts.order_by("number")] == [0, 1]


def test_known_facts_still_refuse_a_token_of_another_queue_and_push_nothing(client, auth, job):
    from accounts.models import ApiToken

    url = f"/api/v1/jobs/{job.pk}/log"
    post(client, url, {"parts": [{"number": 0, "content": "a"}]}, auth)
    mac = {"Authorization": "Bearer " + ApiToken.mint(name="mac", kind="worker", queues=["builds.mac"])[1]}
    response = post(client, url, {"parts": [{"number": 1, "content": "intruder"}]}, mac)
    assert response.status_code == 404
    assert ingest.pending(job.pk) == 0 and [p.number for p in job.parts.all()] == [0]


def test_a_truncated_log_refuses_parts_in_the_same_round_trip_without_pushing(client, auth, job, settings):
    settings.LOG_MAX_BYTES = 4
    url = f"/api/v1/jobs/{job.pk}/log"
    post(client, url, {"parts": [{"number": 0, "content": "12345"}]}, auth)  # over the cap: truncated
    assert fields(job)["truncated"] == "1"
    response = post(client, url, {"parts": [{"number": 1, "content": "x"}]}, auth)
    assert response.status_code == 413 and ingest.pending(job.pk) == 0


def test_a_restart_while_redis_is_away_is_a_503_and_changes_nothing(client, auth, job, monkeypatch):
    """Its card could not be dropped: committing the restart would leave POSTs on the old attempt."""
    import redis

    url = f"/api/v1/jobs/{job.pk}"
    post(client, f"{url}/state", {"state": "failed", "exit_code": 1}, auth)
    dead = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.2)
    with monkeypatch.context() as patch:
        patch.setattr(ingest, "_redis", lambda: dead)
        assert post(client, f"{url}/restart", {}, auth).status_code == 503
    job.refresh_from_db()
    assert (job.attempt, job.state) == (1, "failed")
    assert post(client, f"{url}/restart", {}, auth).status_code == 202
