"""The worker API: validation, authentication, status codes and what readers get back."""

import json

import pytest
from django.utils import timezone

from accounts import tokens
from accounts.models import ApiToken
from jobs.models import Build, Job

pytestmark = pytest.mark.django_db


def post(client, url, body, auth=None, raw=False):
    data = body if raw else json.dumps(body)
    return client.post(url, data, content_type="application/json", headers=auth or {})


BUILD = {"repository": "acme/rocket", "branch": "main", "commit": "abc", "message": "m", "author": "a",
         "event": "push", "jobs": [{"config": {"python": "3.11"}, "queue": "builds.linux"}, {"allow_failure": True}]}


def test_create_build_numbers_builds_and_jobs(client, auth):
    first = post(client, "/api/v1/builds", BUILD, auth)
    second = post(client, "/api/v1/builds", BUILD, auth)
    assert first.status_code == 201, first.content
    assert (first.json()["number"], second.json()["number"]) == (1, 2)
    assert [j["number"] for j in second.json()["jobs"]] == ["2.1", "2.2"]
    assert first.json()["url"].endswith(f"/builds/{first.json()['id']}/")
    assert Job.objects.get(pk=first.json()["jobs"][1]["id"]).allow_failure


def test_explicit_build_number_conflict_is_409(client, auth):
    assert post(client, "/api/v1/builds", {**BUILD, "number": 7}, auth).status_code == 201
    response = post(client, "/api/v1/builds", {**BUILD, "number": 7}, auth)
    assert response.status_code == 409 and "already exists" in response.json()["error"]
    assert post(client, "/api/v1/builds", BUILD, auth).json()["number"] == 8


@pytest.mark.parametrize(("body", "message"), [
    ({**BUILD, "repository": "no-slash"}, "owner/name"),
    ({**BUILD, "jobs": []}, "'jobs' must list at least 1 item"),
    ({**BUILD, "jobs": [{"config": "x"}]}, "jobs[0].config"),
    ({**BUILD, "number": "3"}, "'number' must be an integer"),
    ({k: v for k, v in BUILD.items() if k != "branch"}, "'branch' is required"),
])
def test_create_build_rejects_bad_input(client, auth, body, message):
    response = post(client, "/api/v1/builds", body, auth)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not Build.objects.exists()


def test_missing_token_is_401(client, job):
    response = post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "started"})
    assert response.status_code == 401 and "Authorization" in response.json()["error"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_bad_or_revoked_token_is_401(client, job, token):
    assert post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "started"},
                {"Authorization": "Bearer nope"}).status_code == 401
    tokens.revoke(ApiToken.objects.get())
    assert post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "started"},
                {"Authorization": f"Bearer {token}"}).status_code == 401


def test_tokens_are_stored_hashed(token):
    stored = ApiToken.objects.get()
    assert token not in (stored.hashed_secret, stored.prefix)
    assert tokens.authenticate(token) == stored
    stored.refresh_from_db()
    assert stored.last_used_at is not None


def test_malformed_json_is_400(client, auth, job):
    response = post(client, f"/api/v1/jobs/{job.pk}/state", "{not json", auth, raw=True)
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]


def test_unknown_state_is_400(client, auth, job):
    response = post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "exploded"}, auth)
    assert response.status_code == 400 and "'state' must be one of" in response.json()["error"]


def test_wrong_types_are_400(client, auth, job):
    for body, name in [({"state": "passed", "exit_code": "0"}, "exit_code"), ({"state": 3}, "state"),
                       ({"state": "started", "at": "yesterday"}, "at"), ({"state": "passed", "exit_code": True},
                                                                        "exit_code")]:
        response = post(client, f"/api/v1/jobs/{job.pk}/state", body, auth)
        assert response.status_code == 400 and name in response.json()["error"], body


def test_unknown_job_is_404(client, auth):
    assert post(client, "/api/v1/jobs/999/state", {"state": "started"}, auth).status_code == 404
    assert post(client, "/api/v1/jobs/999/log", {"parts": [{"number": 0, "content": ""}]}, auth).status_code == 404
    assert client.get("/api/v1/jobs/999").status_code == 404


def test_state_report_is_applied_and_cancel_flag_returned(client, auth, job):
    response = post(client, f"/api/v1/jobs/{job.pk}/state",
                    {"state": "cancelled", "at": "2017-02-02T12:00:00Z", "worker": "w", "exit_code": 143}, auth)
    assert response.status_code == 202 and response.json() == {"cancel": False}
    job.refresh_from_db()
    assert (job.state, job.exit_code, job.worker) == ("canceled", 143, "w")


def test_cancel_requested_reaches_the_worker(client, auth, job):
    assert post(client, f"/api/v1/jobs/{job.pk}/cancel", {}, auth).status_code == 202
    assert post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "started"}, auth).json() == {"cancel": True}
    ack = post(client, f"/api/v1/jobs/{job.pk}/log", {"parts": [{"number": 0, "content": "x"}]}, auth).json()
    assert ack["cancel"] is True
    assert client.get(f"/api/v1/jobs/{job.pk}").json()["cancel_requested"] is True


def test_log_parts_report_persisted_through(client, auth, job):
    url = f"/api/v1/jobs/{job.pk}/log"
    assert post(client, url, {"parts": [{"number": 1, "content": "b"}]}, auth).json()["persisted_through"] == -1
    post(client, url, {"parts": [{"number": 0, "content": "a"}]}, auth)
    response = post(client, url, {"parts": [{"number": 2, "content": "c", "final": True}]}, auth)
    assert response.status_code == 202
    body = client.get(url).json()
    assert [p["number"] for p in body["parts"]] == [0, 1, 2] and body["complete"] is True
    assert post(client, url, {"parts": [{"number": 3, "content": ""}]}, auth).json()["persisted_through"] == 2


def test_log_read_after_and_paging(client, auth, job):
    url = f"/api/v1/jobs/{job.pk}/log"
    post(client, url, {"parts": [{"number": n, "content": str(n)} for n in range(5)]}, auth)
    body = client.get(url, {"after": 1, "limit": 2}).json()
    assert [p["number"] for p in body["parts"]] == [2, 3] and body["more"] is True
    assert client.get(url, {"after": "x"}).status_code == 400


def test_bad_parts_are_400(client, auth, job):
    url = f"/api/v1/jobs/{job.pk}/log"
    for body in [{"parts": []}, {"parts": [{"number": -1, "content": ""}]}, {"parts": [{"number": 0}]},
                 {"parts": "x"}, {"parts": [{"number": 0, "content": 5}]}]:
        assert post(client, url, body, auth).status_code == 400, body
    assert not job.parts.exists()


def test_oversized_part_is_413_and_nothing_is_stored(client, auth, job, settings):
    settings.LOG_PART_MAX_BYTES = 8
    response = post(client, f"/api/v1/jobs/{job.pk}/log",
                    {"parts": [{"number": 0, "content": "ok"}, {"number": 1, "content": "x" * 9}]}, auth)
    assert response.status_code == 413 and "limit is 8 bytes" in response.json()["error"]
    assert not job.parts.exists()


def test_parts_beyond_log_cap_are_413_and_log_shows_marker(client, auth, job, settings):
    settings.LOG_MAX_BYTES = 10
    url = f"/api/v1/jobs/{job.pk}/log"
    assert post(client, url, {"parts": [{"number": 0, "content": "12345678"}]}, auth).status_code == 202
    response = post(client, url, {"parts": [{"number": 1, "content": "abc"}]}, auth)
    assert response.status_code == 413 and "truncated" in response.json()["error"]
    assert post(client, url, {"parts": [{"number": 2, "content": "a"}]}, auth).status_code == 413
    text = client.get(f"/jobs/{job.pk}/log.txt").getvalue().decode()
    assert text.startswith("12345678") and "Log truncated" in text


def test_restart_starts_next_attempt_and_old_reports_get_409(client, auth, job):
    url = f"/api/v1/jobs/{job.pk}"
    post(client, f"{url}/log", {"parts": [{"number": 0, "content": "first attempt"}]}, auth)
    assert post(client, f"{url}/restart", {}, auth).status_code == 409  # still queued
    post(client, f"{url}/state", {"state": "failed", "exit_code": 1}, auth)
    response = post(client, f"{url}/restart", {}, auth)
    assert response.status_code == 202 and response.json()["attempt"] == 2
    stale = post(client, f"{url}/state", {"state": "passed", "attempt": 1}, auth)
    assert stale.status_code == 409 and stale.json()["current_attempt"] == 2
    assert post(client, f"{url}/log", {"attempt": 1, "parts": [{"number": 1, "content": "x"}]}, auth).status_code == 409
    post(client, f"{url}/log", {"parts": [{"number": 0, "content": "second attempt"}]}, auth)
    assert client.get(f"/jobs/{job.pk}/log.txt").getvalue() == b"second attempt"
    assert client.get(url).json()["attempt"] == 2


def test_job_json_includes_state_exit_code_and_inconsistency(client, auth, job):
    post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "failed", "exit_code": 0}, auth)
    body = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert (body["state"], body["exit_code"], body["inconsistent"], body["attempt"]) == ("failed", 0, True, 1)


def test_raw_log_strips_ansi_on_request(client, auth, job):
    post(client, f"/api/v1/jobs/{job.pk}/log", {"parts": [{"number": 0, "content": "\x1b[31mred\x1b[0m"}]}, auth)
    assert client.get(f"/jobs/{job.pk}/log.txt").getvalue() == b"\x1b[31mred\x1b[0m"
    response = client.get(f"/jobs/{job.pk}/log.txt?ansi=0&download=1")
    assert response.getvalue() == b"red" and "attachment" in response["Content-Disposition"]


def test_private_jobs_are_404_to_anonymous_but_not_to_staff_or_tokens(client, auth, make_build, alice):
    job = make_build(repository="acme/secret").jobs.get()
    job.build.repository.private = True
    job.build.repository.save()
    for url in (f"/api/v1/jobs/{job.pk}", f"/api/v1/jobs/{job.pk}/log", f"/jobs/{job.pk}/log.txt"):
        assert client.get(url).status_code == 404, url
        assert client.get(url, headers=auth).status_code == 200, url
    client.force_login(alice)
    assert client.get(f"/api/v1/jobs/{job.pk}").status_code == 200


def test_openapi_document_lists_the_endpoints(client):
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.")
    assert {"/api/v1/builds", "/api/v1/jobs/{job_id}/state", "/api/v1/jobs/{job_id}/log"} <= set(doc["paths"])


def test_revoking_a_used_token_takes_effect_at_once(client, auth, job):
    assert post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "started"}, auth).status_code == 202
    stored = ApiToken.objects.get()
    stored.revoked_at = timezone.now()
    stored.save()
    assert post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "started"}, auth).status_code == 401
