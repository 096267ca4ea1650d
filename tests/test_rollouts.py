"""Staged rollouts in simulated time, through the HTTP API: synthetic instances heartbeat, follow the
heartbeat answer's desired_version and run jobs; Celery beat's rollout check runs every 30 s. Run with -s to
see the seed replay's figures (jobs mis-marked, minutes from onset to halt) and the false halts of a good
version."""

import importlib
import json
from datetime import datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.utils import timezone

from accounts.models import ApiToken
from devtools.fleet_sim import Behaviour, SyntheticFleet
from fleet import tasks
from fleet.models import Alert, QueueSettings, Rollout, RolloutEvent, Worker, stage_size, stages_problem
from incidents.models import Incident
from jobs.models import Job

pytestmark = pytest.mark.django_db

START = datetime.fromisoformat("2017-02-02T09:00:00+00:00")
STEP = timedelta(seconds=30)
QUEUE = "builds.linux"


class Rollouts:
    """A fleet that follows its heartbeat answers, a travelling clock, and staff with a personal token."""

    def __init__(self, client: Client, auth: dict, staff_auth: dict, clock, *, seed: int, queue: str = QUEUE,
                 instances: int = 10, version: str = "v2.5.0", failure_rate: float = 0.05, jobs: int | None = None,
                 step: timedelta = STEP):
        self.jobs, self.step_length = jobs, step
        self.api, self.auth, self.staff_auth, self.clock = client, auth, staff_auth, clock
        self.fleet = SyntheticFleet(self.post, timezone.now, seed=seed, queue=queue, follow_desired=True)
        self.fleet.add(instances, version)
        self.fleet.behaviour[version] = Behaviour(failure_rate=failure_rate)
        self.ticks = 0

    def post(self, path: str, body: dict) -> tuple[int, dict]:
        r = self.api.post(path, json.dumps(body), content_type="application/json", headers=self.auth)
        return r.status_code, r.json()

    def staff(self, method: str, tail: str = "", body: dict | None = None, queue: str | None = None):
        path = f"/api/v1/queues/{queue or self.fleet.queue}/rollouts{tail}"
        if method == "get":
            return self.api.get(path, headers=self.staff_auth)
        return self.api.post(path, json.dumps(body or {}), content_type="application/json", headers=self.staff_auth)

    def start(self, version: str, **body) -> dict:
        r = self.staff("post", body={"version": version, "confirm": True, **body})
        assert r.status_code == 201, r.json()
        return r.json()

    def step(self) -> None:
        self.clock.shift(self.step_length)
        self.ticks += 1
        if self.step_length >= timedelta(minutes=1) or self.ticks % 2:  # instances beat once a minute
            self.fleet.heartbeat()
        self.fleet.submit(self.fleet.rng.randint(2, 5) if self.jobs is None else self.jobs)
        self.fleet.work()
        tasks.rollouts_check.delay()

    def run(self, minutes: float, until=None) -> None:
        for _ in range(int(minutes * 60 / self.step_length.total_seconds())):
            self.step()
            if until and until():
                return

    def rollout(self) -> Rollout:
        return Rollout.objects.filter(queue=self.fleet.queue).first()

    def versions(self) -> dict[str, int]:
        live = {}
        for inst in self.fleet.live():
            live[inst.version] = live.get(inst.version, 0) + 1
        return live


@pytest.fixture
def clock():
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def staff_auth(alice) -> dict:
    return {"Authorization": f"Bearer {ApiToken.mint(name='alice-ops', kind='personal', user=alice)[1]}"}


def test_seed_replay_v262_mislabelling_halts_at_the_canary_and_the_fleet_returns_to_v250(
        client, auth, staff_auth, clock):
    """The 2017 rollout, gated: v2.6.2 reports 30% of its exit-0 jobs as failed. Its one canary instance
    marks a few jobs wrongly, the gates halt the rollout at stage 1 and every instance is back on v2.5.0."""
    s = Rollouts(client, auth, staff_auth, clock, seed=3, jobs=12)  # 20 job slots, busy as on a weekday
    s.run(4)  # a baseline of v2.5.0 jobs to compare with
    s.fleet.behaviour["v2.6.2"] = Behaviour(failure_rate=0.05, mislabel_rate=0.30)
    onset = timezone.now()
    plan = s.start("v2.6.2", soak_minutes=15)
    assert plan["state"] == "running" and plan["previous_version"] == "v2.5.0"
    assert plan["stages"] == ["1", "10%", "50%", "100%"] and len(plan["instances_on_version"]) == 1
    assert any("has ever been in service on v2.6.2" in w for w in plan["warnings"])
    canary = plan["instances_on_version"][0]

    s.run(15, until=lambda: s.rollout().state != "running")
    rollout = s.rollout()
    assert rollout.state == "halted" and rollout.stage == 0, rollout.reason
    halted_at = rollout.finished_at
    assert "inconsistent_jobs" in rollout.reason or "version_failure_rate" in rollout.reason
    assert set(Job.objects.exclude(worker_version="v2.5.0").values_list("worker", flat=True)) == {canary}

    s.run(3)  # the next heartbeats tell the canary to switch back; it restarts on v2.5.0
    assert s.versions() == {"v2.5.0": 10}
    assert QueueSettings.for_queue(QUEUE).desired_version == "v2.5.0"
    assert Worker.objects.filter(queue=QUEUE, version="v2.5.0", state="in_service").count() == 10

    current = s.staff("get", "/current").json()
    assert current["state"] == "halted" and current["gates"]["inconsistent_jobs"]["fired"]
    assert [e["kind"] for e in current["events"]] == ["started", "stage_started", "halted"]
    alert = Alert.objects.get(pk=current["alert_id"])
    assert alert.rule == "rollout_halted" and alert.state == "firing"
    assert alert.evidence["rollout"] == rollout.pk and alert.evidence["rollout_url"].endswith(
        f"/fleet/rollouts/{rollout.pk}/")
    assert "inconsistent_jobs" in alert.evidence["gates_fired"]
    assert f"Rollout {rollout.pk} of v2.6.2" in alert.title
    incident = Incident.objects.get(pk=alert.incident_id)
    assert incident.published_at is None  # a draft for staff to review

    mismarked = Job.objects.filter(inconsistent=True).count()
    on_v262 = Job.objects.filter(worker_version="v2.6.2").exclude(state__in=["created", "queued"]).count()
    first_bad = Job.objects.filter(inconsistent=True).order_by("finished_at").first().finished_at
    minutes = (halted_at - onset).total_seconds() / 60
    print(f"\nSEED REPLAY: v2.6.2 (30% of exit-0 jobs reported failed) halted at the canary stage "
          f"{minutes:.1f} min after the rollout began ({(halted_at - first_bad).total_seconds() / 60:.1f} min after "
          f"the first mis-marked job); {mismarked} job(s) mis-marked in total, of {on_v262} run on v2.6.2; "
          f"fleet back on v2.5.0 ({s.versions()})")
    assert 3 <= mismarked <= 10
    assert minutes < 10


def test_missing_tag_rollback_is_halted_at_its_first_instance_then_refused_by_preflight(
        client, auth, staff_auth, clock):
    """The 2017 rollback: v2.5.0's image tag is gone from the registry. Its canary reports
    `manifest ... not found`; the start gate halts the rollout within minutes while v2.6.2 keeps serving.
    Trying again, preflight names the pull error and refuses without an explicit confirmation."""
    s = Rollouts(client, auth, staff_auth, clock, seed=5, instances=6, version="v2.6.2")
    s.fleet.missing_images.add("v2.5.0")
    s.run(5)
    onset = timezone.now()
    s.start("v2.5.0", soak_minutes=10)
    s.run(10, until=lambda: s.rollout().state != "running")
    rollout = s.rollout()
    assert rollout.state == "halted" and rollout.stage == 0
    minutes = (rollout.finished_at - onset).total_seconds() / 60
    assert minutes < 3
    assert "start" in rollout.last_gates and rollout.last_gates["start"]["fired"]
    assert "manifest for travisci/worker:v2.5.0 not found" in rollout.last_gates["start"]["findings"][0]["summary"]
    print(f"\nMISSING TAG: rollback to v2.5.0 halted at its first instance {minutes:.1f} min after it began")

    s.run(3)
    assert s.versions() == {"v2.6.2": 6}  # the old version kept serving; the canary went back to it
    assert Worker.objects.filter(queue=QUEUE, state="in_service", version="v2.6.2").count() == 6

    before = Rollout.objects.count()
    r = s.staff("post", body={"version": "v2.5.0"})
    assert r.status_code == 409
    answer = r.json()
    assert "confirm" in answer["error"]
    assert any("image pull error" in w and "manifest for travisci/worker:v2.5.0 not found" in w
               for w in answer["warnings"])
    assert Rollout.objects.count() == before


def _good_rollout(client, auth, staff_auth, clock, seed: int) -> tuple[str, int]:
    """One compact rollout of a good version over 4 instances, 5% genuine failures on both versions: a minute
    per step, the gates checked every minute, a one-minute soak."""
    s = Rollouts(client, auth, staff_auth, clock, seed=seed, queue=f"builds.rep{seed}", instances=4, jobs=3,
                 step=timedelta(minutes=1))
    s.fleet.behaviour["v2.7.0"] = Behaviour(failure_rate=0.05)
    s.run(3)
    s.start("v2.7.0", soak_minutes=1)
    s.run(30, until=lambda: not s.rollout().is_active)
    return s.rollout().state, s.versions().get("v2.7.0", 0)


@pytest.mark.slow
def test_a_good_version_completes_every_stage_without_a_false_halt_over_20_seeds(client, auth, staff_auth, clock):
    outcomes = [_good_rollout(client, auth, staff_auth, clock, seed) for seed in range(20)]
    false_halts = sum(state != "completed" for state, _ in outcomes)
    print(f"\nGOOD VERSION: {20 - false_halts} of 20 seeded rollouts completed; {false_halts} false halt(s)")
    assert false_halts == 0, outcomes
    assert all(on_new == 4 for _, on_new in outcomes)
    rollout = Rollout.objects.filter(queue="builds.rep0").get()
    kinds = list(rollout.events.values_list("kind", flat=True))
    assert kinds.count("stage_finished") == 4 and kinds[-1] == "completed"
    assert QueueSettings.for_queue("builds.rep0").desired_version == "v2.7.0"


def test_a_restart_mid_rollout_changes_nothing(client, auth, staff_auth, clock):
    """The plan lives in the database: fresh modules and connections (a new beat or web process) give
    every instance the same answer, and the rollout carries on from the same stage to completion."""
    s = Rollouts(client, auth, staff_auth, clock, seed=9, instances=6)
    s.fleet.behaviour["v2.7.0"] = Behaviour(failure_rate=0.05)
    s.run(3)
    s.start("v2.7.0", soak_minutes=2)
    s.run(6, until=lambda: s.rollout().stage == 2)
    assert s.rollout().stage == 2
    before = {i.name: s.post(f"/api/v1/workers/{i.name}/heartbeat", _beat(i))[1] for i in s.fleet.live()}
    stage, started = s.rollout().stage, s.rollout().stage_started_at

    from django.core.cache import cache

    from accounts import tokens
    from fleet import rollouts, services

    importlib.reload(services)
    importlib.reload(rollouts)
    importlib.reload(tasks)
    tokens._cache.clear()
    cache.delete(tasks.ROLLOUTS_LOCK)

    after = {i.name: s.post(f"/api/v1/workers/{i.name}/heartbeat", _beat(i))[1] for i in s.fleet.live()}
    assert after == before
    assert sum(a["desired_version"] == "v2.7.0" for a in after.values()) == stage_size("50%", 6)
    assert (s.rollout().stage, s.rollout().stage_started_at) == (stage, started)
    s.run(10, until=lambda: not s.rollout().is_active)
    assert s.rollout().state == "completed" and s.versions() == {"v2.7.0": 6}


def _beat(inst) -> dict:
    return {"version": inst.version, "queue": QUEUE, "pool_size": inst.pool_size, "busy": inst.busy,
            "state": inst.state}


# --- staff controls --------------------------------------------------------------------------------------

def test_pause_holds_the_stage_resume_carries_on_promote_skips_the_soak_abort_rolls_back(
        client, auth, staff_auth, clock, alice):
    s = Rollouts(client, auth, staff_auth, clock, seed=2, instances=4)
    s.fleet.behaviour["v2.7.0"] = Behaviour(failure_rate=0.05)
    s.run(3)
    rid = s.start("v2.7.0", soak_minutes=3)["id"]
    s.run(2)
    assert s.staff("post", f"/{rid}/pause").json()["state"] == "paused"
    s.run(6)
    assert s.rollout().stage == 0  # paused: the soak does not end
    assert s.staff("post", f"/{rid}/resume").json()["state"] == "running"
    s.run(0.5)
    assert s.rollout().stage == 0  # the paused minutes did not count toward the soak
    promoted = s.staff("post", f"/{rid}/promote").json()
    assert promoted["stage"] == 1 and promoted["state"] == "running"
    aborted = s.staff("post", f"/{rid}/abort").json()
    assert aborted["state"] == "aborted"
    s.run(3)
    assert s.versions() == {"v2.5.0": 4}
    events = RolloutEvent.objects.filter(rollout_id=rid)
    assert [(e.kind, e.actor) for e in events if e.user_id] == [
        ("started", "alice"), ("paused", "alice"), ("resumed", "alice"), ("promoted", "alice"),
        ("stage_finished", "alice"), ("stage_started", "alice"), ("aborted", "alice")]
    page = Client()
    page.force_login(alice)
    html = page.get(f"/fleet/rollouts/{rid}/").content.decode()
    assert "aborted" in html and "promoted" in html.lower() and "v2.7.0" in html


# --- bad input: 400 or 409 with a message, and the plan unchanged --------------------------------------

@pytest.fixture
def running(client, auth, staff_auth, clock):
    s = Rollouts(client, auth, staff_auth, clock, seed=4, instances=4)
    s.run(2)
    plan = s.start("v2.7.0", soak_minutes=5)
    return s, plan


def _unchanged(s: Rollouts, plan: dict) -> None:
    now = s.staff("get", "/current").json()
    assert {k: now[k] for k in ("id", "state", "stage", "version", "stages")} == \
        {k: plan[k] for k in ("id", "state", "stage", "version", "stages")}
    assert Rollout.objects.count() == 1


@pytest.mark.parametrize("body, status, message", [
    ({"version": "v2.8.0"}, 409, "is running; abort it or let it finish first"),
    ({"version": "v2.8.0", "stages": ["1", "50%", "10%", "100%"]}, 400, "stages must be increasing"),
    ({"version": "v2.8.0", "stages": ["10%", "1", "100%"]}, 400, "stages must be increasing"),
    ({"version": "v2.8.0", "stages": ["1", "10%"]}, 400, "the last stage must be 100%"),
    ({"version": "v2.8.0", "stages": ["1", "ten"]}, 400, "neither a number of instances"),
    ({"version": "v2.8.0", "soak_minutes": 0}, 400, "soak_minutes must be more than 0"),
    ({"version": "v2.8.0", "soak_minutes": -5}, 400, "soak_minutes must be more than 0"),
    ({"version": "v2.8.0", "soak_minutes": "15"}, 400, "soak_minutes"),
    ({}, 400, "version"),
])
def test_bad_rollout_requests_are_refused_and_the_plan_is_unchanged(running, body, status, message):
    s, plan = running
    if status == 400:  # refused before the active rollout matters: checked on a queue without one too
        r = s.staff("post", body={**body, "confirm": True}, queue="builds.other")
        assert r.status_code == status and message in r.json()["error"], r.json()
    r = s.staff("post", body={**body, "confirm": True})
    assert r.status_code == status, r.json()
    assert message in r.json()["error"]
    _unchanged(s, plan)


def test_a_rollout_to_the_version_already_running_is_refused(client, auth, staff_auth, clock):
    s = Rollouts(client, auth, staff_auth, clock, seed=4, instances=2)
    s.run(2)
    r = s.staff("post", body={"version": "v2.5.0", "confirm": True})
    assert r.status_code == 409 and r.json()["error"] == f"{QUEUE} already runs v2.5.0"
    assert not Rollout.objects.exists()


def test_promoting_a_halted_rollout_is_refused(running):
    s, plan = running
    s.fleet.behaviour["v2.7.0"] = Behaviour(mislabel_rate=0.5)
    s.run(10, until=lambda: s.rollout().state == "halted")
    halted = s.staff("get", "/current").json()
    assert halted["state"] == "halted"
    for action in ("promote", "pause", "resume", "abort"):
        r = s.staff("post", f"/{plan['id']}/{action}")
        assert r.status_code == 409 and "halted" in r.json()["error"], action
    assert s.staff("get", "/current").json() == halted


def test_actions_on_another_queues_rollout_or_none_are_404(running):
    s, plan = running
    assert s.staff("post", f"/{plan['id']}/pause", queue="builds.other").status_code == 404
    assert s.staff("post", f"/{plan['id'] + 1}/pause").status_code == 404
    assert s.staff("get", "/current", queue="builds.other").status_code == 404
    _unchanged(s, plan)


def test_only_staff_personal_tokens_operate_rollouts(running, client, worker_token, build_token, token, dave):
    s, plan = running
    personal = ApiToken.mint(name="dave", kind="personal", user=dave)[1]
    for secret in (worker_token, build_token, token, personal):
        headers = {"Authorization": f"Bearer {secret}"}
        r = client.post(f"/api/v1/queues/{QUEUE}/rollouts/{plan['id']}/abort", "{}",
                        content_type="application/json", headers=headers)
        assert r.status_code == 403 and "may not operate the fleet" in r.json()["error"]
        r = client.post(f"/api/v1/queues/{QUEUE}/rollouts", json.dumps({"version": "v9"}),
                        content_type="application/json", headers=headers)
        assert r.status_code == 403
    _unchanged(s, plan)


def test_the_heartbeat_image_field_is_validated(client, auth):
    beat = {"version": "v1", "queue": QUEUE, "pool_size": 1, "busy": 0, "state": "in_service"}
    for good in ("travisci/worker:v2.5.0", "quay.io:443/travis/worker:v2.6.2-rc.1", "worker:1"):
        r = client.post("/api/v1/workers/w-1/heartbeat", json.dumps({**beat, "image": good}),
                        content_type="application/json", headers=auth)
        assert r.status_code == 200, (good, r.json())
        assert Worker.objects.get(name="w-1").image == good
    for bad in ("travisci/worker", "Travis/Worker:v1", "worker:", "a b:c", "x" * 300 + ":1", 5):
        r = client.post("/api/v1/workers/w-1/heartbeat", json.dumps({**beat, "image": bad}),
                        content_type="application/json", headers=auth)
        assert r.status_code == 400 and "image" in r.json()["error"], bad


def test_stage_rules():
    assert stages_problem(["1", "10%", "50%", "100%"]) is None
    assert stages_problem(["2", "5", "100%"]) is None
    assert "increasing" in stages_problem(["1", "1", "100%"])
    assert "more than 100%" in stages_problem(["1", "150%"])
    assert "empty" in stages_problem([])
    assert [stage_size(s, 6) for s in ("1", "10%", "50%", "100%")] == [1, 1, 3, 6]
    assert stage_size("5", 2) == 2
