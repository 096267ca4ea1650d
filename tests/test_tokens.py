"""Scoped tokens: each kind may do exactly its job, expired and revoked ones are refused everywhere."""

import json
import time
from datetime import timedelta

import httpx
import pytest
import time_machine
from django.utils import timezone

from accounts import tokens
from accounts.models import ApiToken, AuditEntry
from jobs.models import Job

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fast_hashing")]


def post(client, path, body, secret):
    return client.post(path, json.dumps(body), content_type="application/json",
                       headers={"Authorization": f"Bearer {secret}"})


def mint(**kwargs) -> str:
    kwargs.setdefault("name", f"t-{time.monotonic_ns()}")
    return ApiToken.mint(**kwargs)[1]


BEAT = {"version": "v1", "pool_size": 2, "busy": 0, "state": "in_service"}


def test_worker_token_reports_only_for_jobs_on_its_queues(client, make_build):
    build = create_two_queue_build(make_build)
    linux, mac = build.jobs.get(queue="builds.linux"), build.jobs.get(queue="builds.mac")
    secret = mint(kind="worker", queues=["builds.linux"])
    assert post(client, f"/api/v1/jobs/{linux.pk}/state", {"state": "started"}, secret).status_code == 202
    refused = post(client, f"/api/v1/jobs/{mac.pk}/state", {"state": "started"}, secret)
    assert refused.status_code == 404 and refused.json()["error"] == f"job {mac.pk} does not exist"
    log = post(client, f"/api/v1/jobs/{mac.pk}/log", {"parts": [{"number": 0, "content": "x"}]}, secret)
    assert log.status_code == 404
    assert Job.objects.get(pk=mac.pk).state == "queued"


def create_two_queue_build(make_build):
    from jobs.models import create_build

    return create_build(repository="acme/rocket", branch="main", commit="abc",
                        jobs=[{"queue": "builds.linux"}, {"queue": "builds.mac"}])


def test_worker_token_heartbeats_only_for_its_queues(client, db):
    secret = mint(kind="worker", queues=["builds.linux"])
    assert post(client, "/api/v1/workers/w1/heartbeat", {**BEAT, "queue": "builds.linux"}, secret).status_code == 200
    refused = post(client, "/api/v1/workers/w1/heartbeat", {**BEAT, "queue": "builds.mac"}, secret)
    assert refused.status_code == 403 and "queue builds.mac" in refused.json()["error"]


def test_worker_token_reads_no_private_log_and_cannot_create_builds(client, make_build):
    job = make_build(repository="acme/secret").jobs.get()
    job.build.repository.private = True
    job.build.repository.save()
    auth = {"Authorization": f"Bearer {mint(kind='worker', queues=[job.queue])}"}
    elsewhere = {"Authorization": f"Bearer {mint(kind='worker', queues=['builds.elsewhere'])}"}
    # The worker running the job may ask what it has stored (to resend the rest), never read the log.
    progress = client.get(f"/api/v1/jobs/{job.pk}", headers=auth)
    assert progress.status_code == 200 and progress.json()["log"]["persisted_through"] == -1
    assert client.get(f"/api/v1/jobs/{job.pk}/log", headers=auth).status_code == 404
    assert client.get(f"/jobs/{job.pk}/log.txt", headers=auth).status_code == 404
    assert client.get(f"/api/v1/jobs/{job.pk}", headers=elsewhere).status_code == 404
    secret = mint(kind="worker", queues=[job.queue])
    created = post(client, "/api/v1/builds", {"repository": "acme/rocket", "branch": "m", "commit": "c",
                                              "jobs": [{}]}, secret)
    assert created.status_code == 403


def test_build_token_of_an_organization_creates_builds_there_only(client, acme, db):
    secret = mint(kind="build", organizations=["acme"])
    body = {"branch": "main", "commit": "abc", "jobs": [{}]}
    assert post(client, "/api/v1/builds", {**body, "repository": "acme/rocket"}, secret).status_code == 201
    refused = post(client, "/api/v1/builds", {**body, "repository": "octo/x"}, secret)
    assert refused.status_code == 403 and "octo/x" in refused.json()["error"]


def test_build_token_of_one_repository_reports_for_its_jobs_only(client, make_build):
    mine, other = make_build(repository="acme/rocket").jobs.get(), make_build(repository="acme/other").jobs.get()
    secret = mint(kind="build", repositories=["acme/rocket"])
    assert post(client, f"/api/v1/jobs/{mine.pk}/state", {"state": "started"}, secret).status_code == 202
    assert post(client, f"/api/v1/jobs/{other.pk}/state", {"state": "started"}, secret).status_code == 404
    assert post(client, "/api/v1/workers/w/heartbeat", {**BEAT, "queue": "builds.linux"}, secret).status_code == 403


def test_personal_token_reads_as_its_user_and_operates_only_with_operate(client, make_build, carol, dave):
    job = make_build(repository="acme/secret").jobs.get()
    job.build.repository.private = True
    job.build.repository.save()
    readonly, operator = mint(kind="personal", user=carol), mint(kind="personal", user=dave)
    assert client.get(f"/api/v1/jobs/{job.pk}", headers={"Authorization": f"Bearer {readonly}"}).status_code == 200
    assert post(client, f"/api/v1/jobs/{job.pk}/cancel", {}, readonly).status_code == 403
    assert post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "started"}, operator).status_code == 404
    assert post(client, f"/api/v1/jobs/{job.pk}/cancel", {}, operator).status_code == 202
    entry = AuditEntry.objects.get(action="job.cancel")
    assert entry.actor == dave and entry.organization == "acme" and "acme/secret" in entry.target


def test_personal_token_of_an_outsider_does_not_see_a_private_job(client, make_build, bob):
    job = make_build(repository="acme/secret").jobs.get()
    job.build.repository.private = True
    job.build.repository.save()
    secret = mint(kind="personal", user=bob)
    assert client.get(f"/api/v1/jobs/{job.pk}/log", headers={"Authorization": f"Bearer {secret}"}).status_code == 404
    assert post(client, f"/api/v1/jobs/{job.pk}/cancel", {}, secret).status_code == 404


def test_expired_token_is_refused(client, job):
    secret = mint(kind="worker", queues=["builds.linux"], expires_at=timezone.now() + timedelta(hours=1))
    assert post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "received"}, secret).status_code == 202
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        refused = post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "started"}, secret)
    assert refused.status_code == 401 and "expired" in refused.json()["error"]


def test_token_records_its_last_use(client, job):
    secret = mint(kind="worker", queues=["builds.linux"])
    post(client, f"/api/v1/jobs/{job.pk}/state", {"state": "started"}, secret)
    assert ApiToken.objects.get(kind="worker").last_used_at is not None


@pytest.mark.e2e
def test_revoked_token_is_refused_by_another_server_process_within_a_second(asgi_server, second_asgi_server,
                                                                            transactional_db):
    from jobs.models import create_build

    job = create_build(repository="acme/rocket", branch="main", commit="abc", jobs=[{}]).jobs.get()
    token, secret = ApiToken.mint(name="w", kind="worker", queues=["builds.linux"])
    headers = {"Authorization": f"Bearer {secret}"}
    with httpx.Client(timeout=10) as http:
        for base in (asgi_server, second_asgi_server):  # both processes now hold the token in their caches
            assert http.post(f"{base}/api/v1/jobs/{job.pk}/state", json={"state": "received"},
                             headers=headers).status_code == 202
        tokens.revoke(token)  # in this (a third) process, as the CLI or the UI would
        revoked_at = time.monotonic()
        statuses = []
        while time.monotonic() - revoked_at < 1.0:
            statuses.append(http.post(f"{second_asgi_server}/api/v1/jobs/{job.pk}/state",
                                      json={"state": "received"}, headers=headers).status_code)
            if statuses[-1] == 401:
                break
        assert statuses[-1] == 401, statuses
        assert http.post(f"{asgi_server}/api/v1/jobs/{job.pk}/state", json={"state": "received"},
                         headers=headers).status_code == 401
