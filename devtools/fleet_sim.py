"""A synthetic fleet in simulated time: instances that heartbeat and run jobs through the HTTP API only.

Scenario tests drive it with Django's test client and a travelling clock, so half an hour of fleet
life takes seconds and "the alert fired N minutes after onset" can be measured; the demo fleet
(devtools/simulator.py) shares its error messages. Nothing here touches the database directly."""

import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

# (status code, JSON body) for a POST of a JSON body to an API path.
Post = Callable[[str, dict], tuple[int, dict]]

IMAGE_PULL_ERROR = ("Error response from daemon: manifest for travisci/worker:{version} not found: manifest unknown "
                    "(request id {request_id})")
BENIGN_ERRORS = [
    "read tcp 10.0.{a}.{b}:{port}->10.0.9.1:443: read: connection reset by peer",
    "log part {n} upload retried after timeout",
]


@dataclass
class Behaviour:
    """How jobs go on a worker version: genuine failures, and exit-0 jobs wrongly reported as failed."""

    failure_rate: float = 0.05
    mislabel_rate: float = 0.0


@dataclass
class Instance:
    name: str
    version: str
    state: str = "in_service"
    pool_size: int = 2
    busy: int = 0
    image_missing: bool = False  # cannot pull its image: stays starting and reports the pull error
    dead: bool = False  # stopped heartbeating and reporting (crashed host)
    errors: list[dict] = field(default_factory=list)
    desired_version: str | None = None
    drain: bool = False
    running: list[int] = field(default_factory=list)
    booting: bool = False  # restarted on another version: reports starting once, then serves


class SyntheticFleet:
    def __init__(self, post: Post, now: Callable[[], datetime], *, queue: str = "builds.linux", seed: int = 0,
                 benign_error_rate: float = 0.0, follow_desired: bool = False):
        self.post, self.now, self.queue = post, now, queue
        self.rng = random.Random(seed)
        self.instances: dict[str, Instance] = {}
        self.behaviour: dict[str, Behaviour] = {}
        self.waiting: list[int] = []
        self.benign_error_rate = benign_error_rate
        # Instances that do what the heartbeat answer says: restart on the desired version between jobs.
        self.follow_desired = follow_desired
        self.missing_images: set[str] = set()  # versions whose image tag the registry does not have
        self.builds = 0
        self.counter = 0

    def add(self, count: int, version: str, *, state: str = "in_service", pool_size: int = 2,
            image_missing: bool = False) -> list[Instance]:
        added = []
        for _ in range(count):
            self.counter += 1
            inst = Instance(f"{self.queue}-{version}-{self.counter}", version, "starting" if image_missing else state,
                            pool_size, image_missing=image_missing)
            self.instances[inst.name] = inst
            added.append(inst)
        return added

    def remove(self, inst: Instance) -> None:
        """Stop an instance the orderly way: a last heartbeat saying stopped."""
        inst.state, inst.busy = "stopped", 0
        self._beat(inst)
        del self.instances[inst.name]

    def live(self, version: str | None = None) -> list[Instance]:
        return [i for i in self.instances.values() if not i.dead and (version is None or i.version == version)]

    def _beat(self, inst: Instance) -> None:
        if inst.image_missing:
            inst.errors.append({"at": self.now().isoformat(), "message": IMAGE_PULL_ERROR.format(
                version=inst.version, request_id=uuid.UUID(int=self.rng.getrandbits(128)))})
        elif self.rng.random() < self.benign_error_rate:
            template = self.rng.choice(BENIGN_ERRORS)
            inst.errors.append({"at": self.now().isoformat(), "message": template.format(
                a=self.rng.randint(0, 255), b=self.rng.randint(0, 255), port=self.rng.randint(30000, 60000),
                n=self.rng.randint(1, 500))})
        status, body = self.post(f"/api/v1/workers/{inst.name}/heartbeat", {
            "version": inst.version, "backend": "docker", "host": f"{inst.name}.internal", "queue": self.queue,
            "pool_size": inst.pool_size, "busy": inst.busy, "state": inst.state, "errors": inst.errors,
            "image": f"travisci/worker:{inst.version}"})
        assert status == 200, body
        inst.errors = []
        if inst.booting and not inst.image_missing:
            inst.booting, inst.state = False, "in_service"  # came up; says so in its next heartbeat
        inst.desired_version, inst.drain = body["desired_version"], body["drain"]
        if inst.drain and inst.state == "in_service":
            inst.state = "draining"

    def heartbeat(self) -> None:
        for inst in list(self.live()):
            self._beat(inst)
            if inst.state == "stopped":
                del self.instances[inst.name]

    def submit(self, jobs: int) -> None:
        """One build with `jobs` jobs on the queue; they wait until an instance takes them."""
        if jobs <= 0:
            return
        self.builds += 1
        status, body = self.post("/api/v1/builds", {
            "repository": "acme/rocket", "branch": "main", "commit": f"{self.rng.getrandbits(160):040x}",
            "jobs": [{"queue": self.queue} for _ in range(jobs)]})
        assert status == 201, body
        self.waiting.extend(j["id"] for j in body["jobs"])

    def _finish(self, inst: Instance, job_id: int) -> None:
        behaviour = self.behaviour.get(inst.version, Behaviour())
        exit_code = 1 if self.rng.random() < behaviour.failure_rate else 0
        state = "failed" if exit_code else "passed"
        if exit_code == 0 and self.rng.random() < behaviour.mislabel_rate:
            state = "failed"  # the 2017 bug: the script exited 0, the worker reports a failure
        who = {"worker": inst.name, "worker_version": inst.version, "at": self.now().isoformat()}
        status, body = self.post(f"/api/v1/jobs/{job_id}/state", {"state": state, "exit_code": exit_code, **who})
        assert status == 202, body

    def work(self) -> None:
        """Every live in-service instance finishes what it ran last step and takes new jobs from the queue."""
        instances = self.live()
        self.rng.shuffle(instances)  # which idle instance gets the next job is a matter of timing
        for inst in instances:
            for job_id in inst.running if inst.state in ("in_service", "draining") else []:
                self._finish(inst, job_id)
            inst.running = []
            wanted = inst.desired_version
            if self.follow_desired and wanted and wanted != inst.version and inst.state in ("in_service", "starting"):
                inst.version, inst.state, inst.booting = wanted, "starting", True
                inst.image_missing = wanted in self.missing_images
            if inst.state != "in_service":
                inst.busy = 0
                if inst.state == "draining":
                    inst.state = "stopped"  # drained: says so in its last heartbeat and goes away
                continue
            take, self.waiting = self.waiting[: inst.pool_size], self.waiting[inst.pool_size:]
            for job_id in take:
                who = {"worker": inst.name, "worker_version": inst.version, "at": self.now().isoformat()}
                status, body = self.post(f"/api/v1/jobs/{job_id}/state", {"state": "started", **who})
                assert status == 202, body
            inst.running, inst.busy = take, len(take)
