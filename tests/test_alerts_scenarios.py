"""Scenarios: synthetic fleets feed the HTTP API in simulated time; the Celery beat task evaluates the rules
every 30 s. Each bad case must raise its alert within minutes of onset; a healthy fleet with normal failure
noise must raise nothing. Run with -s to see how long after onset each alert fired."""

import json
from datetime import datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from devtools.fleet_sim import Behaviour, SyntheticFleet
from fleet import tasks
from fleet.models import Alert, AlertState
from jobs.models import Job
from jobs.states import JobState

pytestmark = [pytest.mark.django_db, pytest.mark.slow]

START = datetime.fromisoformat("2017-02-02T09:00:00+00:00")
STEP = timedelta(seconds=30)


class Scenario:
    """A fleet, a travelling clock, and staff at the fleet page; step() is 30 s of fleet life."""

    def __init__(self, api: Client, staff: Client, auth: dict, clock, seed: int = 1, **fleet_options):
        self.api, self.staff, self.auth, self.clock = api, staff, auth, clock
        self.fleet = SyntheticFleet(self.post, timezone.now, seed=seed, **fleet_options)
        self.fired: dict[str, Alert] = {}
        self.ticks = 0

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        r = self.api.post(path, json.dumps(body), content_type="application/json", headers=self.auth)
        return r.status_code, r.json()

    def staff_sets(self, **fields) -> None:
        body = {"queue": self.fleet.queue, "action": "settings", "desired_version": "", "expected_capacity": "0",
                **fields}
        assert self.staff.post("/fleet/queue", body).status_code == 302

    def step(self, jobs: int | None = None) -> None:
        self.clock.shift(STEP)
        self.ticks += 1
        if self.ticks % 2:  # workers beat once a minute (the timeout is 90 s); rules run every 30 s
            self.fleet.heartbeat()
        self.fleet.submit(self.fleet.rng.randint(2, 5) if jobs is None else jobs)
        self.fleet.work()
        tasks.alerts_evaluate.delay()
        for alert in Alert.objects.all():
            self.fired.setdefault(alert.rule, alert)

    def run(self, minutes: float, until: set[str] | None = None, **kw) -> None:
        """Step for `minutes`, or until every rule in `until` has fired."""
        for _ in range(int(minutes * 60 / STEP.total_seconds())):
            self.step(**kw)
            if until and until <= set(self.fired):
                return

    def delay(self, rule: str, onset: datetime) -> float:
        """Minutes from onset until the rule's first alert fired."""
        return (self.fired[rule].fired_at - onset).total_seconds() / 60


def report(scenario: str, rule: str, minutes: float, note: str = "") -> None:
    print(f"\nSCENARIO {scenario}: {rule} fired {minutes:.1f} min after onset {note}".rstrip())


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


def test_healthy_fleet_with_normal_failure_noise_raises_nothing(client, staff, auth, clock):
    """Three versions side by side, 5% genuine failures everywhere, an occasional benign error, an instance
    replaced the normal way (it starts and comes into service within a minute): an hour without alerts."""
    s = Scenario(client, staff, auth, clock, seed=7, benign_error_rate=0.01)
    for version in ("v2.5.0", "v2.5.1", "v2.6.0"):
        s.fleet.add(3, version)
        s.fleet.behaviour[version] = Behaviour(failure_rate=0.05)
    s.staff_sets(desired_version="v2.6.0", expected_capacity="16")
    for minute in range(60):
        if minute == 20:  # routine replacement: one instance stops, a new one boots for a minute
            s.fleet.remove(s.fleet.live("v2.5.0")[0])
            (new,) = s.fleet.add(1, "v2.6.0", state="starting")
        if minute == 21:
            new.state = "in_service"
        s.run(1)
    finished = Job.objects.filter(state__in=[JobState.PASSED, JobState.FAILED])
    failed = finished.filter(state=JobState.FAILED).count()
    assert finished.count() > 400 and 0.02 < failed / finished.count() < 0.09  # the noise was really there
    assert list(Alert.objects.values_list("rule", "subject")) == []


def test_2017_rollout_mislabels_jobs_then_rollback_never_takes_effect(client, staff, auth, clock):
    """The reference incident, compressed: v2.6.2 reports exit-0 jobs as failed; the rollback to v2.5.0
    cannot pull its image, so instances never come into service while the old ones are retired."""
    s = Scenario(client, staff, auth, clock, seed=3)
    s.fleet.add(6, "v2.5.0")
    s.staff_sets(desired_version="v2.5.0", expected_capacity="12")
    s.run(10)
    assert not Alert.objects.exists()

    # Rollout of v2.6.2: one instance replaced every two minutes.
    rollout = timezone.now()
    s.staff_sets(desired_version="v2.6.2", expected_capacity="12")
    s.fleet.behaviour["v2.6.2"] = Behaviour(failure_rate=0.05, mislabel_rate=0.25)
    for _ in range(6):
        s.fleet.remove(s.fleet.live("v2.5.0")[0])
        s.fleet.add(1, "v2.6.2")
        s.run(2)
    s.run(10, until={"inconsistent_jobs", "version_failure_rate"})
    assert {"inconsistent_jobs", "version_failure_rate"} <= set(s.fired)
    assert s.fired["inconsistent_jobs"].subject == "builds.linux@v2.6.2"
    assert s.fired["version_failure_rate"].subject == "builds.linux@v2.6.2"
    assert s.fired["version_failure_rate"].evidence["p_value"] < 0.001
    for rule in ("inconsistent_jobs", "version_failure_rate"):
        assert s.delay(rule, rollout) < 15
        report("2017 rollout of v2.6.2 (25% of exit-0 jobs reported failed)", rule, s.delay(rule, rollout))
    assert "capacity_low" not in s.fired and "desired_version_missing" not in s.fired

    # Rollback: v2.5.0 wanted again; its new instances cannot pull the image; v2.6.2 is retired regardless.
    rollback = timezone.now()
    s.staff_sets(desired_version="v2.5.0", expected_capacity="12")
    s.fleet.add(6, "v2.5.0", image_missing=True)
    first_retirement = None
    wanted = {"error_burst", "stuck_starting", "desired_version_missing", "capacity_low", "queued_too_long"}
    for minute in range(40):
        if minute % 2 == 0 and s.fleet.live("v2.6.2"):
            first_retirement = first_retirement or timezone.now()
            s.fleet.remove(s.fleet.live("v2.6.2")[0])
        s.run(1)
        if wanted <= set(s.fired):
            break
    assert wanted <= set(s.fired), set(s.fired)
    burst = s.fired["error_burst"]
    assert "manifest for travisci/worker:<tag> not found" in burst.evidence["signature"]
    assert "Error response from daemon" in s.fired["desired_version_missing"].evidence["recent_errors"][0]["signature"]
    first_wait = s.fired["queued_too_long"].onset_at
    onsets = {"error_burst": rollback, "stuck_starting": rollback, "desired_version_missing": rollback,
              "capacity_low": first_retirement, "queued_too_long": first_wait}
    notes = {"stuck_starting": "(limit 10 min)", "desired_version_missing": "(grace 15 min)",
             "queued_too_long": "(onset: first job that waited; limit 15 min)",
             "capacity_low": "(onset: first v2.6.2 instance retired)"}
    for rule, onset in onsets.items():
        report("2017 rollback to v2.5.0 whose image tag is missing", rule, s.delay(rule, onset), notes.get(rule, ""))
    assert s.delay("error_burst", rollback) < 5
    assert s.delay("capacity_low", first_retirement) < 2
    assert s.delay("stuck_starting", rollback) < 12  # heartbeats come once a minute
    assert s.delay("desired_version_missing", rollback) < 16
    assert s.delay("queued_too_long", first_wait) < 16

    # Staff acknowledge one; then the missing tag is published and the rollback takes effect.
    ack = s.staff.post(f"/alerts/{s.fired['desired_version_missing'].pk}/acknowledge")
    assert ack.status_code == 302
    for inst in s.fleet.live("v2.5.0"):
        inst.image_missing, inst.state = False, "in_service"
    fixed = timezone.now()
    s.run(20)
    for rule in ("stuck_starting", "desired_version_missing", "capacity_low", "queued_too_long", "error_burst"):
        alert = Alert.objects.get(pk=s.fired[rule].pk)
        assert alert.state == AlertState.RESOLVED, rule
        assert alert.resolution.startswith("condition clear for")
        assert alert.resolved_at - fixed < timedelta(minutes=17)
    assert Alert.objects.get(pk=s.fired["desired_version_missing"].pk).acknowledged_at is not None


def test_stale_jobs_are_errored_with_a_reason_and_alerted_when_many(client, staff, auth, clock):
    """Two instances die mid-job: their jobs never report again and are errored after 30 quiet minutes."""
    s = Scenario(client, staff, auth, clock, seed=5)
    s.fleet.add(4, "v2.5.0")
    s.run(5, jobs=8)
    dying = s.fleet.live()[:2]
    assert all(len(i.running) == 2 for i in dying)
    for inst in dying:
        inst.dead = True
    onset = timezone.now()
    stuck_jobs = [j for i in dying for j in i.running]
    s.run(40, until={"stale_jobs"}, jobs=0)
    assert "stale_jobs" in s.fired
    report("two instances die mid-job (4 jobs stop reporting)", "stale_jobs", s.delay("stale_jobs", onset),
           "(stale limit 30 min)")
    assert 30 <= s.delay("stale_jobs", onset) < 31
    for job in Job.objects.filter(pk__in=stuck_jobs):
        assert job.state == JobState.ERRORED
        assert "No state or log activity for 30 minutes" in job.error_reason
        assert job.build.state == "errored"
    api = client.get(f"/api/v1/jobs/{stuck_jobs[0]}").json()
    assert api["state"] == "errored" and api["error_reason"].startswith("No state or log activity")
    assert set(s.fired) == {"stale_jobs"}


def test_new_version_with_a_few_failures_stays_quiet_until_the_samples_are_enough(client, staff, auth, clock):
    """Three failures out of five jobs on a brand new version is not yet evidence; fifty jobs at 40% is."""
    s = Scenario(client, staff, auth, clock, seed=11)
    s.fleet.add(4, "v2.5.0")
    s.run(10)
    s.fleet.add(1, "v2.7.0")
    s.fleet.behaviour["v2.7.0"] = Behaviour(failure_rate=0.4)
    onset = timezone.now()
    canary_jobs = Job.objects.filter(worker_version="v2.7.0")
    while canary_jobs.filter(state=JobState.FAILED).count() < 3:
        s.step()
    assert canary_jobs.count() < 20
    assert "version_failure_rate" not in s.fired  # a few failures of a few jobs: not yet evidence
    s.run(30, until={"version_failure_rate"})
    assert s.fired["version_failure_rate"].subject == "builds.linux@v2.7.0"
    evidence = s.fired["version_failure_rate"].evidence
    assert evidence["finished"] >= 20 and evidence["p_value"] < 0.001
    report("one canary instance of v2.7.0 failing 40% of jobs (genuine exit 1)", "version_failure_rate",
           s.delay("version_failure_rate", onset), f"(needed {evidence['finished']} jobs of the version)")
    assert "inconsistent_jobs" not in s.fired  # genuine failures agree with their exit codes
