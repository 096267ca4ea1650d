"""End to end: a real HTTP server and a real Celery worker carry a report into the database and
onto the channel layer, through a real Redis."""

import httpx
import pytest

from jobs import events
from jobs.models import Job

from .conftest import wait_until
from .layer import listen, receive

pytestmark = pytest.mark.e2e


def test_report_travels_from_http_through_celery_to_database_and_channel_layer(live_system, token):
    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=live_system, headers=headers, timeout=10) as http:
        created = http.post("/api/v1/builds", json={"repository": "acme/rocket", "branch": "main", "commit": "c0ffee",
                                                    "jobs": [{"config": {"os": "linux"}}]})
        assert created.status_code == 201, created.text
        job_id = created.json()["jobs"][0]["id"]

        channel = listen(events.job_group(job_id))

        assert http.post(f"/api/v1/jobs/{job_id}/state", json={"state": "started", "worker": "w1"}).status_code == 202
        parts = [{"number": 1, "content": "second\n"}, {"number": 0, "content": "first\n"}]
        assert http.post(f"/api/v1/jobs/{job_id}/log", json={"parts": parts}).status_code == 202
        http.post(f"/api/v1/jobs/{job_id}/log", json={"parts": [
            {"number": 2, "content": "Done. Your build exited with 0.\n", "final": True}]})
        http.post(f"/api/v1/jobs/{job_id}/state", json={"state": "passed"})

        job = wait_until(lambda: Job.objects.filter(pk=job_id, state="passed", log_persisted_through=2).first())
        assert (job.worker, job.exit_code, job.inconsistent) == ("w1", 0, False)
        assert http.get(f"/jobs/{job_id}/log.txt").text == "first\nsecond\nDone. Your build exited with 0.\n"
        assert http.get(f"/api/v1/jobs/{job_id}/log").json()["complete"] is True

        frames = []
        while not any(f["type"] == "job.state" and f["state"] == "passed" for f in frames):
            frames.append(receive(channel, 30))
        numbers = [p["number"] for f in frames if f["type"] == "log.parts" for p in f["parts"]]
        assert sorted(numbers) == [0, 1, 2]
        assert [f["state"] for f in frames if f["type"] == "job.state"][0] == "started"
        seqs = [f["seq"] for f in frames if f["type"] == "job.state"]
        assert seqs == sorted(seqs)


def test_demo_fleet_reports_whole_builds_through_the_api(live_system, token):
    from devtools.simulator import Fleet
    from jobs.models import Build

    Fleet(live_system, token, rate=600, workers=4, seed=7, line_delay=0.001).run(builds=2)
    builds = wait_until(lambda: list(Build.objects.filter(state__in=["passed", "failed", "errored"]))
                        if Build.objects.exclude(state__in=["passed", "failed", "errored"]).count() == 0
                        and Build.objects.count() == 2 else None)
    job = builds[0].jobs.first()
    wait_until(lambda: Job.objects.get(pk=job.pk).log_complete)
    log = httpx.get(f"{live_system}/jobs/{job.pk}/log.txt").text
    assert "travis_fold:start:" in log and "travis_time:end:" in log and "\x1b[" in log
    assert log.rstrip().endswith(f"Done. Your build exited with {Job.objects.get(pk=job.pk).exit_code}.")
