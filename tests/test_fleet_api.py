"""The heartbeat endpoint: validation, what it records (times, versions, grouped errors), what it answers."""

import json
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from fleet import tasks
from fleet.models import ErrorSignature, QueueSettings, Worker, WorkerError, error_signature

pytestmark = pytest.mark.django_db

BEAT = {"version": "v2.5.0", "backend": "docker", "host": "ip-10-0-0-1", "queue": "builds.linux",
        "pool_size": 4, "busy": 1, "state": "in_service"}


def beat(client, auth, name="w1", **changes):
    body = {**BEAT, **changes}
    return client.post(f"/api/v1/workers/{name}/heartbeat", json.dumps(body), content_type="application/json",
                       headers=auth)


def test_first_heartbeat_registers_the_worker_and_answers_what_staff_want(client, auth):
    response = beat(client, auth)
    assert response.status_code == 200, response.content
    assert response.json() == {"desired_version": None, "drain": False}
    worker = Worker.objects.get(name="w1")
    assert (worker.version, worker.queue, worker.pool_size, worker.busy, worker.state) == \
        ("v2.5.0", "builds.linux", 4, 1, "in_service")
    assert worker.first_seen_at == worker.last_seen_at


def test_response_carries_desired_version_and_drain_of_the_queue_and_the_instance(client, auth):
    QueueSettings.objects.create(queue="builds.linux", desired_version="v2.6.2")
    assert beat(client, auth).json() == {"desired_version": "v2.6.2", "drain": False}
    Worker.objects.filter(name="w1").update(drain_requested=True)
    assert beat(client, auth).json() == {"desired_version": "v2.6.2", "drain": True}
    QueueSettings.objects.filter(queue="builds.linux").update(drain=True)
    assert beat(client, auth, name="w2").json()["drain"] is True


def test_first_and_last_seen_and_version_history_are_kept(client, auth):
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        beat(client, auth)
        clock.shift(timedelta(minutes=5))
        beat(client, auth, version="v2.6.2", state="starting")
        clock.shift(timedelta(minutes=5))
        beat(client, auth, version="v2.6.2", state="in_service")
    worker = Worker.objects.get(name="w1")
    assert worker.first_seen_at == start
    assert worker.last_seen_at == start + timedelta(minutes=10)
    assert worker.state_since == start + timedelta(minutes=10)
    assert worker.heartbeats == 3
    assert [(c.from_version, c.to_version, c.at) for c in worker.version_changes.all()] == \
        [("v2.5.0", "v2.6.2", start + timedelta(minutes=5))]


def test_errors_are_grouped_by_signature_with_counts_and_samples(client, auth):
    now = timezone.now()
    errors = [{"at": (now - timedelta(seconds=i)).isoformat(),
               "message": f"Error response from daemon: manifest for travisci/worker:v2.5.{i} not found "
                          f"(request id 6b1d{i}f3a-0c1e-4c6b-9a43-1f2e3d4c5b6a)"} for i in range(3)]
    errors.append({"at": now.isoformat(), "message": "dial tcp 10.0.3.7:2376: connect: connection refused"})
    assert beat(client, auth, errors=errors).status_code == 200
    assert beat(client, auth, name="w2", errors=errors[:1]).status_code == 200
    pull = ErrorSignature.objects.get(signature__startswith="Error response")
    assert pull.count == 4
    assert pull.signature == ("Error response from daemon: manifest for travisci/worker:<tag> not found "
                              "(request id <uuid>)")
    assert len(pull.samples) == 4 and {s["worker"] for s in pull.samples} == {"w1", "w2"}
    assert pull.first_seen_at == now - timedelta(seconds=2)
    assert ErrorSignature.objects.count() == 2


def test_an_error_resent_in_the_next_heartbeat_is_not_counted_twice(client, auth):
    errors = [{"at": timezone.now().isoformat(), "message": "image pull failed: 503"}]
    beat(client, auth, errors=errors)
    beat(client, auth, errors=errors)
    assert WorkerError.objects.count() == 1
    assert ErrorSignature.objects.get().count == 1


@pytest.mark.parametrize(("message", "signature"), [
    ("pull travisci/worker:v2.5.0 failed", "pull travisci/worker:<tag> failed"),
    ("container 3f9a8b7c6d5e exited with 137", "container <hash> exited with <n>"),
    ("job 123456 lost after 30s", "job <n> lost after <n>s"),
    ("connect to 10.0.0.12:443 refused", "connect to <ip> refused"),
    ("id 0c6b1d2e-3f4a-4b5c-8d9e-0f1a2b3c4d5e gone", "id <uuid> gone"),
    ("digest sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "digest <hash>"),
])
def test_error_signature_strips_numbers_hashes_ids_and_tags(message, signature):
    assert error_signature(message) == signature


def test_missing_or_bad_token_is_401(client, token):
    response = client.post("/api/v1/workers/w1/heartbeat", json.dumps(BEAT), content_type="application/json")
    assert response.status_code == 401
    assert beat(client, {"Authorization": "Bearer nope"}).status_code == 401
    assert not Worker.objects.exists()


def test_busy_over_pool_size_is_a_409_as_no_schema_can_refuse_it(client, auth):
    response = beat(client, auth, busy=5)
    assert response.status_code == 409
    assert response.json()["error"] == "'busy' (5) cannot exceed 'pool_size' (4)"
    assert not Worker.objects.exists()


@pytest.mark.parametrize(("changes", "message"), [
    ({"state": "sleeping"}, "'state' must be one of starting, in_service, draining, stopped"),
    ({"version": ""}, "'version' must not be blank"),
    ({"queue": None}, "'queue' is required"),
    ({"pool_size": "4"}, "'pool_size' must be an integer"),
    ({"pool_size": -1}, "'pool_size' must be at least 0"),
    ({"errors": "boom"}, "'errors' must be an array"),
    ({"errors": ["boom"]}, "'errors[0]' must be an object"),
    ({"errors": [{"at": "yesterday", "message": "x"}]}, "'errors[0].at' must be an RFC 3339 timestamp"),
    ({"errors": [{"at": "2017-02-04T10:00:00", "message": "x"}]}, "'errors[0].at' must include a time zone"),
    ({"errors": [{"at": "2017-02-04T10:00:00Z"}]}, "'errors[0].message' is required"),
    ({"errors": [{"at": "2017-02-04T10:00:00Z", "message": "x"}] * 101}, "'errors' must list at most 100 items"),
])
def test_bad_heartbeats_are_400_with_a_clear_message(client, auth, changes, message):
    body = {**BEAT, **changes}
    body = {k: v for k, v in body.items() if v is not None}
    response = client.post("/api/v1/workers/w1/heartbeat", json.dumps(body), content_type="application/json",
                           headers=auth)
    assert response.status_code == 400
    assert message in response.json()["error"]
    assert not Worker.objects.exists()


def test_bad_worker_name_and_malformed_json_are_400(client, auth):
    assert beat(client, auth, name="-bad").status_code == 400
    response = client.post("/api/v1/workers/w1/heartbeat", "{nope", content_type="application/json", headers=auth)
    assert response.status_code == 400 and "malformed JSON" in response.json()["error"]


def test_heartbeat_requires_post(client, auth):
    assert client.get("/api/v1/workers/w1/heartbeat", headers=auth).status_code == 405


def test_openapi_documents_the_heartbeat(client):
    doc = client.get("/api/v1/openapi.json").json()
    operation = doc["paths"]["/api/v1/workers/{name}/heartbeat"]["post"]
    assert set(operation["responses"]) >= {"200", "400", "401"}


def test_prune_forgets_old_occurrences_but_signatures_keep_their_totals(client, auth):
    old = timezone.now() - timedelta(days=8)
    errors = [{"at": old.isoformat(), "message": "image pull failed: 503"},
              {"at": timezone.now().isoformat(), "message": "image pull failed: 502"}]
    beat(client, auth, errors=errors)
    tasks.fleet_prune.delay()
    assert list(WorkerError.objects.values_list("message", flat=True)) == ["image pull failed: 502"]
    assert ErrorSignature.objects.get().count == 2
