"""Hostile input to the worker API: refused with a 400 that names the field, never a 500, never stored.

Every text field of every endpoint refuses NUL and lone surrogates; names are matched whole; every
/api/ answer is JSON, errors included; an unreachable Redis is a quick 503 that says what to resend."""

import json

import pytest
import redis
import redis.asyncio

from fleet.models import Worker
from jobs import ingest
from jobs.models import Build, Job, LogPart

pytestmark = pytest.mark.django_db

BUILD = {"repository": "acme/rocket", "branch": "main", "commit": "abc", "jobs": [{"config": {"os": "linux"}}]}
BEAT = {"version": "v2.5.0", "backend": "docker", "host": "h", "queue": "builds.linux", "pool_size": 4, "busy": 1,
        "state": "in_service", "errors": [{"at": "2017-02-04T10:00:00Z", "message": "boom"}]}
POISON = {"NUL": "a\x00b", "lone surrogate": "a\udc00b"}


def post(client, url, body, auth=None):
    return client.post(url, json.dumps(body), content_type="application/json", headers=auth or {})


def with_value(body: dict, path: str, value):
    """A deep copy of body with the field at a dotted path (jobs.0.number) set to value."""
    body = json.loads(json.dumps(body))
    *parents, last = path.split(".")
    node = body
    for key in parents:
        node = node[int(key)] if key.isdigit() else node[key]
    node[int(last) if last.isdigit() else last] = value
    return body


def label(path: str) -> str:
    parts = path.split(".")
    text = parts[0]
    for p in parts[1:]:
        text += f"[{p}]" if p.isdigit() else f".{p}"
    return text


@pytest.mark.parametrize("kind", POISON)
@pytest.mark.parametrize("path", ["repository", "branch", "commit", "message", "author", "event", "jobs.0.number",
                                  "jobs.0.queue", "jobs.0.config.os"])
def test_builds_refuse_poison_in_every_text_field(client, auth, kind, path):
    response = post(client, "/api/v1/builds", with_value(BUILD, path, POISON[kind]), auth)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert f"'{label(path if 'config' not in path else 'jobs.0.config')}'" in error and kind.split()[-1] in error
    assert not Build.objects.exists()


@pytest.mark.parametrize("kind", POISON)
def test_a_poisoned_config_key_is_refused_too(client, auth, kind):
    response = post(client, "/api/v1/builds", with_value(BUILD, "jobs.0.config", {POISON[kind]: 1}), auth)
    assert response.status_code == 400 and "'jobs[0].config'" in response.json()["error"]


@pytest.mark.parametrize("kind", POISON)
@pytest.mark.parametrize("path", ["state", "at", "worker", "worker_version"])
def test_state_reports_refuse_poison_in_every_text_field(client, auth, job, kind, path):
    body = {"state": "started", "at": "2017-02-04T10:00:00Z", "worker": "w1", "worker_version": "v1"}
    response = post(client, f"/api/v1/jobs/{job.pk}/state", with_value(body, path, POISON[kind]), auth)
    assert response.status_code == 400 and f"'{path}'" in response.json()["error"]
    job.refresh_from_db()
    assert job.state == "queued" and job.worker == ""


@pytest.mark.parametrize("kind", POISON)
@pytest.mark.parametrize("path", ["version", "backend", "host", "queue", "state", "errors.0.at", "errors.0.message"])
def test_heartbeats_refuse_poison_in_every_text_field(client, auth, kind, path):
    response = post(client, "/api/v1/workers/w1/heartbeat", with_value(BEAT, path, POISON[kind]), auth)
    assert response.status_code == 400 and f"'{label(path)}'" in response.json()["error"]
    assert not Worker.objects.exists()


@pytest.mark.parametrize("name", ["w1%00", "w1%0A", "w1%ED%B0%80", "-w1", "w" * 256])
def test_worker_names_are_matched_whole(client, auth, name):
    response = post(client, f"/api/v1/workers/{name}/heartbeat", BEAT, auth)
    assert response.status_code == 400 and response["Content-Type"] == "application/json"
    assert not Worker.objects.exists()


def test_a_nul_in_log_content_is_stored_as_a_replacement_character(client, auth, job):
    response = post(client, f"/api/v1/jobs/{job.pk}/log", {"parts": [{"number": 0, "content": "a\x00b"}]}, auth)
    assert response.status_code == 202
    assert LogPart.objects.get(job=job).content == "a\ufffdb"
    job.refresh_from_db()
    assert job.log_persisted_through == 0


def test_a_lone_surrogate_in_log_content_is_refused(client, auth, job):
    body = {"parts": [{"number": 0, "content": "fine"}, {"number": 1, "content": "a\udc00"}]}
    response = post(client, f"/api/v1/jobs/{job.pk}/log", body, auth)
    assert response.status_code == 400
    assert "'parts[1].content' must not contain a lone surrogate (\\udc00)" in response.json()["error"]
    assert response.json()["errors"][0]["field"] == "parts[1].content"
    assert not LogPart.objects.exists() and ingest.pending(job.pk) == 0


@pytest.mark.parametrize(("repository", "message"), [
    ("rel/fuzz\n", "must be owner/name"),
    ("../..", "reserved"),
    ("./.", "reserved"),
    ("api/thing", "reserved"),
    ("builds/x", "reserved"),
    ("acme/..", "reserved"),
    ("o" * 101 + "/x", "must be owner/name"),
    ("acme/" + "n" * 150, "must be owner/name"),
    ("acme/" + "n" * 200, "longer than 201"),
    ("acme", "must be owner/name"),
])
def test_repository_names_are_matched_whole_and_reserved_ones_refused(client, auth, repository, message):
    response = post(client, "/api/v1/builds", {**BUILD, "repository": repository}, auth)
    assert response.status_code == 400 and message in response.json()["error"], response.json()
    assert not Build.objects.exists()


def test_what_the_schema_allows_is_accepted(client, auth):
    """Integral floats are integers in JSON Schema; a null where the schema allows one is fine."""
    body = {**BUILD, "number": 7.0, "jobs": [{"number": "7.1", "allow_failure": False}]}
    response = post(client, "/api/v1/builds", body, auth)
    assert response.status_code == 201, response.content
    assert response.json()["number"] == 7


@pytest.mark.parametrize(("body", "message"), [
    ({**BUILD, "jobs": [{"number": ""}]}, "'jobs[0].number' must not be blank"),
    ({**BUILD, "number": 7.5}, "'number' must be an integer"),
    ({**BUILD, "number": "7"}, "'number' must be an integer"),
    ({**BUILD, "jobs": [{"allow_failure": 1}]}, "'jobs[0].allow_failure' must be a boolean"),
])
def test_what_the_schema_forbids_is_refused(client, auth, body, message):
    response = post(client, "/api/v1/builds", body, auth)
    assert response.status_code == 400 and message in response.json()["error"]


def test_null_errors_in_a_heartbeat_are_refused_as_the_schema_says(client, auth):
    response = post(client, "/api/v1/workers/w1/heartbeat", {**BEAT, "errors": None}, auth)
    assert response.status_code == 400 and "'errors' must be an array" in response.json()["error"]


def test_deeply_nested_bodies_are_a_400(client, auth, job):
    raw = '{"parts":' + "[" * 1000 + "]" * 1000 + "}"
    response = client.post(f"/api/v1/jobs/{job.pk}/log", raw, content_type="application/json", headers=auth)
    assert response.status_code == 400 and response.json()["error"]
    deep = {"os": "linux"}
    for _ in range(40):
        deep = {"x": deep}
    response = post(client, "/api/v1/builds", with_value(BUILD, "jobs.0.config", deep), auth)
    assert response.status_code == 400 and "deeper than 32" in response.json()["error"]


@pytest.mark.parametrize("query", ["limit=-5", "limit=0", "limit=5001", "after=-2", "after=x", "limit=1.5",
                                   "after=99999999999999999999"])
def test_log_reads_with_bad_paging_are_400(client, job, query):
    response = client.get(f"/api/v1/jobs/{job.pk}/log?{query}")
    assert response.status_code == 400 and response.json()["error"].startswith("'")


@pytest.mark.parametrize(("method", "url", "status"), [
    ("get", "/api/v1/nothing-here", 404),
    ("get", "/api/v1/jobs/999999", 404),
    ("put", "/api/v1/builds", 405),
    ("delete", "/api/v1/jobs/1/log", 405),
    ("get", "/api/v1/jobs/1/state", 405),
    ("get", "/api/v2/nothing.json", 404),
])
def test_every_api_answer_is_json(client, method, url, status):
    response = getattr(client, method)(url)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json" and response.json()["error"]
    if status == 405:
        assert response["Allow"]


def test_a_body_over_the_size_limit_is_a_json_413(client, auth, job, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 100
    body = {"parts": [{"number": 0, "content": "x" * 200}]}
    response = post(client, f"/api/v1/jobs/{job.pk}/log", body, auth)
    assert response.status_code == 413 and "100-byte limit" in response.json()["error"]


def test_an_unexpected_error_is_a_json_500(client, auth, job, monkeypatch):
    from jobs import api

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    monkeypatch.setattr(api, "parse_state", broken)
    client.raise_request_exception = False
    response = post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "started"}, auth)
    assert response.status_code == 500 and response.json() == {"error": "internal error; it has been logged"}


def test_nul_in_a_page_address_is_a_400_not_a_500(client, db):
    assert client.get("/?branch=a%00b").status_code == 400
    assert client.get("/acme%00/rocket/").status_code == 400
    error = client.get("/api/v1/jobs/1/log?after=%00").json()["error"]
    assert error == "query parameter 'after' must not contain NUL (\\u0000)"


@pytest.fixture
def redis_down():
    dead = redis.Redis(host="127.0.0.1", port=9, socket_connect_timeout=0.2)
    with pytest.MonkeyPatch.context() as patch:  # undone before conftest empties the (real) buffers
        patch.setattr(ingest, "_redis", lambda: dead)
        patch.setattr(ingest, "aredis", lambda: redis.asyncio.Redis(host="127.0.0.1", port=9,
                                                                     socket_connect_timeout=0.2))
        yield


def test_log_parts_while_redis_is_down_are_a_503_that_says_what_is_stored(client, auth, job, redis_down):
    Job.objects.filter(pk=job.pk).update(log_persisted_through=4)
    response = post(client, f"/api/v1/jobs/{job.pk}/log", {"parts": [{"number": 5, "content": "x"}]}, auth)
    assert response.status_code == 503
    assert response["Retry-After"] == "3"
    assert response.json()["persisted_through"] == 4 and response.json()["cancel"] is False


def test_a_full_backlog_is_a_429_with_retry_after(client, auth, job, settings):
    settings.LOG_BUFFER_MAX_ITEMS = 1
    ingest.buffer_parts(job.pk, 1, json.dumps({"parts": [{"number": 0, "content": "x"}]}).encode())
    response = post(client, f"/api/v1/jobs/{job.pk}/log", {"parts": [{"number": 1, "content": "y"}]}, auth)
    assert response.status_code == 429 and response["Retry-After"] == "3"
    assert response.json()["persisted_through"] == -1
    assert ingest.pending(job.pk) == 1


def test_duplicate_job_numbers_are_a_409_as_no_schema_can_refuse_them(client, auth):
    response = post(client, "/api/v1/builds", {**BUILD, "jobs": [{"number": "1"}, {"number": "1"}]}, auth)
    assert response.status_code == 409 and "unique" in response.json()["error"]
    assert not Build.objects.exists()


def test_a_repository_whose_build_numbers_are_used_up_is_a_409_not_a_500(client, auth):
    assert post(client, "/api/v1/builds", {**BUILD, "number": 2**31 - 1}, auth).status_code == 201
    response = post(client, "/api/v1/builds", BUILD, auth)
    assert response.status_code == 409 and "used up its build numbers" in response.json()["error"]


@pytest.mark.parametrize("value", ["   ", "\x1f", "\t\x85"])
def test_blank_is_spaces_or_control_characters_as_the_schema_says(client, auth, value):
    import re

    from buildboard.lib.jsonapi import NON_BLANK

    assert not re.search(NON_BLANK, value)
    response = post(client, "/api/v1/builds", {**BUILD, "commit": value}, auth)
    assert response.status_code == 400 and "'commit' must not be blank" in response.json()["error"]


@pytest.mark.parametrize(("at", "stored"), [
    ("1096-03-10T13:20:23.5+18:51", "1096-03-09T18:29:23.500000+00:00"),
    ("0001-01-01T00:00:00+05:00", "0001-01-01T00:00:00+00:00"),
    ("9999-12-31T23:59:59-05:00", None),  # the future: recorded as now, like any worker clock running ahead
])
def test_any_rfc_3339_offset_and_year_is_accepted_and_kept_in_utc(client, auth, at, stored):
    from fleet.models import WorkerError

    body = {**BEAT, "errors": [{"at": at, "message": "boom"}]}
    response = post(client, "/api/v1/workers/w1/heartbeat", body, auth)
    assert response.status_code == 200, response.content
    if stored:
        assert WorkerError.objects.get().at.isoformat() == stored


def test_an_earlier_attempts_log_is_read_with_a_query_integer(client, auth, job):
    assert client.get(f"/api/v1/jobs/{job.pk}/log?attempt=1").json()["attempt"] == 1
    assert client.get(f"/api/v1/jobs/{job.pk}/log?attempt=2").status_code == 404
    assert client.get(f"/api/v1/jobs/{job.pk}/log?attempt=x").status_code == 400
