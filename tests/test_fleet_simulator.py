"""The demo fleet's heartbeats: it follows the desired version one instance at a time and shows problems."""

import httpx
import pytest
from django.utils import timezone

from devtools.simulator import Fleet
from fleet.models import ErrorSignature, QueueSettings, Worker
from jobs.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture
def http(client):
    """The demo fleet speaks httpx; here its requests go through Django's test client, on the test database."""

    def handle(request: httpx.Request) -> httpx.Response:
        headers = {"Authorization": request.headers["Authorization"]}
        if request.method == "GET":
            response = client.get(request.url.path, headers=headers)
        else:
            response = client.post(request.url.path, request.content, content_type="application/json",
                                   headers=headers)
        return httpx.Response(response.status_code, content=response.content, request=request,
                              headers={"Content-Type": response["Content-Type"]})

    with httpx.Client(transport=httpx.MockTransport(handle)) as c:
        yield c


def beat_all(fleet, http, rounds=1):
    for _ in range(rounds):
        for worker in fleet.workers:
            fleet.heartbeat(http, worker)


def test_demo_fleet_rolls_out_the_desired_version_one_instance_at_a_time(http, token):
    fleet = Fleet("http://testserver", token, workers=3, boot_seconds=0)
    fleet.base_version = "v2.5.0"
    beat_all(fleet, http)
    assert set(Worker.objects.values_list("version", "state")) == {("v2.5.0", "in_service")}
    QueueSettings.objects.create(queue="builds.linux", desired_version="v2.6.0", desired_version_set_at=timezone.now())
    beat_all(fleet, http)
    assert sorted(w.state for w in fleet.workers) == ["in_service", "in_service", "starting"]  # one at a time
    beat_all(fleet, http, rounds=6)
    assert set(Worker.objects.values_list("version", "state")) == {("v2.6.0", "in_service")}
    assert Worker.objects.get(name="demo-worker-0").version_changes.get().to_version == "v2.6.0"


def test_demo_fleet_shows_a_missing_image_then_recovers(http, token):
    fleet = Fleet("http://testserver", token, workers=2, boot_seconds=0, seed=1)
    fleet.base_version = "v2.5.0"
    worker = fleet.start_problem("missing-image")
    beat_all(fleet, http, rounds=3)
    assert Worker.objects.get(name=worker.name).state == "starting"
    signature = ErrorSignature.objects.get()
    assert signature.signature.startswith("Error response from daemon: manifest for travisci/worker:<tag> not found")
    assert signature.count == 3
    fleet.end_problem("missing-image", worker)
    beat_all(fleet, http)
    assert Worker.objects.get(name=worker.name).state == "in_service"


def test_demo_fleet_mislabeled_jobs_are_inconsistent(http, token, make_build):
    fleet = Fleet("http://testserver", token, workers=1, seed=3, line_delay=0)
    fleet.base_version = "v2.5.0"
    worker = fleet.start_problem("mislabeled-jobs")
    for job in make_build(jobs=6).jobs.all():
        fleet.run_job(http, worker, job.pk, "python: 3.12")
    bad = Job.objects.filter(inconsistent=True)
    assert bad.exists() and set(bad.values_list("worker_version", "state", "exit_code")) == {("v2.6.2", "failed", 0)}
