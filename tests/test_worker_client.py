"""The worker side of the API contract (devtools/worker_client.py), as the demo fleet uses it: resend after
429/503 (waiting Retry-After) and dropped connections, keep parts until persisted_through covers them."""

import httpx
import pytest

from devtools import worker_client
from devtools.worker_client import ApiClient, LogStream, Refused
from jobs.models import Job

pytestmark = pytest.mark.django_db


class Server:
    """httpx in front of Django's test client, with faults to inject: canned answers and lost requests."""

    def __init__(self, client):
        self.client, self.canned, self.lose, self.seen = client, [], set(), []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.seen.append((request.method, request.url.path, request.content))
        if self.canned:
            answer = self.canned.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        headers = {"Authorization": request.headers["Authorization"]}
        if request.method == "GET":
            response = self.client.get(request.url.path, headers=headers)
        else:
            if any(f'"number": {n},'.encode() in request.content for n in self.lose):
                self.lose.clear()  # acknowledged, then lost (say, with a Redis that kept no AOF)
                return httpx.Response(202, json={"cancel": False, "persisted_through": -1})
            response = self.client.post(request.url.path, request.content, content_type="application/json",
                                        headers=headers)
        return httpx.Response(response.status_code, content=response.content,
                              headers={k: v for k, v in response.items()})


@pytest.fixture
def server(client):
    return Server(client)


@pytest.fixture
def sleeps(monkeypatch):
    slept = []
    monkeypatch.setattr(worker_client.time, "sleep", slept.append)
    return slept


@pytest.fixture
def api(server, token):
    return ApiClient("http://testserver", token, httpx.Client(transport=httpx.MockTransport(server.handle)))


def unavailable(retry_after="3"):
    return httpx.Response(503, json={"error": "briefly unavailable", "persisted_through": -1},
                          headers={"Retry-After": retry_after})


def test_a_503_is_resent_after_retry_after(api, server, sleeps, job):
    server.canned = [unavailable("3"), httpx.Response(429, headers={"Retry-After": "1"}, json={"error": "full"})]
    assert api.post(f"/api/v1/jobs/{job.pk}/state", {"state": "started"}) == {"cancel": False}
    assert len(sleeps) == 2 and 3 <= sleeps[0] <= 3.6 and 1 <= sleeps[1] <= 1.2
    assert api.retries == 2
    job.refresh_from_db()
    assert job.state == "started"


def test_a_dropped_connection_is_resent_with_backoff(api, server, sleeps, job):
    server.canned = [httpx.ConnectError("refused"), httpx.ReadError("reset")]
    api.post(f"/api/v1/jobs/{job.pk}/state", {"state": "started"})
    assert len(sleeps) == 2 and sleeps[0] < sleeps[1]


def test_an_outage_longer_than_the_client_waits_is_the_callers_problem(api, server, sleeps, job):
    api.give_up_after = 5
    server.canned = [unavailable("3")] * 10
    with pytest.raises(TimeoutError):
        api.post(f"/api/v1/jobs/{job.pk}/state", {"state": "started"})


def test_a_400_is_not_resent(api, server, sleeps, job):
    with pytest.raises(Refused):
        api.post(f"/api/v1/jobs/{job.pk}/state", {"state": "exploded"})
    assert sleeps == [] and len(server.seen) == 1


def test_a_part_acknowledged_but_lost_is_resent_until_stored(api, server, sleeps, job):
    log = LogStream(api, job.pk, resend_after=0)
    server.lose = {2}
    for n in range(5):
        log.send(f"line {n}\n", final=n == 4)
    assert log.finish(timeout=5)
    job.refresh_from_db()
    assert job.log_persisted_through == 4 and job.log_complete
    assert list(job.parts.values_list("number", flat=True).order_by("number")) == [0, 1, 2, 3, 4]
    assert log.resent >= 1 and log.accepted == {0, 1, 2, 3, 4}


def test_parts_sent_during_an_outage_are_resent_when_it_ends(api, server, sleeps, job):
    log = LogStream(api, job.pk)
    log.send("a\n")
    server.canned = [unavailable(), unavailable()]
    log.send("b\n", final=True)
    assert log.finish(timeout=5)
    assert Job.objects.get(pk=job.pk).log_persisted_through == 1


def test_a_restarted_job_stops_the_stream(api, server, sleeps, job):
    log = LogStream(api, job.pk)
    server.canned = [httpx.Response(409, json={"error": "attempt 1 is not the job's current attempt (2)"})]
    log.send("a\n")
    assert log.stopped == "superseded" and log.finish(timeout=1)
