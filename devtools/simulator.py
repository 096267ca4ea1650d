"""A demo fleet: simulated workers that run fake builds and report them through the HTTP API only.

The workers also send heartbeats and follow what staff set on the fleet page: a desired version is rolled
out one instance at a time, a drain is honoured. With `problem_every` set, the fleet now and then shows
one of the failures the alerts are there to catch (see PROBLEMS), then recovers on its own.

Like a real worker it resends: after a 429 or 503 (waiting Retry-After), after a dropped connection,
and any log part that `persisted_through` has not reached after a while (see worker_client.py)."""

import itertools
import queue
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from .fleet_sim import IMAGE_PULL_ERROR
from .worker_client import ApiClient, LogStream, Refused, Superseded

REPOSITORIES = {
    "acme/rocket": ["python: 3.10", "python: 3.11", "python: 3.12"],
    "acme/widgets": ["node: 20", "node: 22"],
    "octo/kettle": ["go: 1.22", "go: 1.23", "go: tip"],
    "octo/docs": ["ruby: 3.3"],
}
BRANCHES = ["main", "main", "main", "develop", "feature/faster-tests", "fix/flaky-login"]
AUTHORS = ["Ada Lovelace", "Grace Hopper", "Linus Torvalds", "Margaret Hamilton", "Ken Thompson"]
MESSAGES = ["Fix flaky login test", "Bump dependencies", "Add retry to uploader", "Refactor build matrix",
            "Speed up the test suite", "Document the deploy process", "Handle empty config files"]

GREEN, RED, YELLOW, BOLD, RESET = "\x1b[32;1m", "\x1b[31;1m", "\x1b[33;1m", "\x1b[1m", "\x1b[0m"


# Shares of a job's time: checkout, install, then the tests; the timed folds cover the whole job.
SECTION_SHARES = (0.06, 0.19, 0.75)


def plan_log(config: str, outcome: str, rng: random.Random, lines: int = 60, seconds: float = 0.0,
             start_ns: int | None = None) -> list[tuple[float, str]]:
    """A Travis-style log (folds, timers, colours, a \\r progress bar, the exit line) as (offset in seconds
    from the job's start, text) pairs, to be streamed at those offsets. The travis_time markers carry
    the planned times, so the folds' durations add up to the job's."""
    start_ns = time.time_ns() if start_ns is None else start_ns
    out: list[tuple[float, str]] = [(0.0, f"{BOLD}Worker information{RESET}\n"), (0.0, "hostname: demo-worker\n"),
                                    (0.0, f"{config}\n")]
    timer = itertools.count(1)
    cursor = 0.0

    def section(name: str, command: str, body: list[str], share: float) -> None:
        nonlocal cursor
        tid = f"{next(timer):08x}"
        took = seconds * share
        begin, finish = cursor, cursor + took
        out.append((begin, f"travis_fold:start:{name}\r\x1b[0K"))
        out.append((begin, f"travis_time:start:{tid}\r\x1b[0K$ {command}\n"))
        for i, line in enumerate(body):
            out.append((begin + took * (i + 1) / (len(body) + 1), line))
        start, end = start_ns + round(begin * 1e9), start_ns + round(finish * 1e9)
        out.append((finish, f"\ntravis_time:end:{tid}:start={start},finish={end},duration={end - start}\r\x1b[0K"))
        out.append((finish, f"travis_fold:end:{name}\r\x1b[0K"))
        cursor = finish

    checkout, install, tests = SECTION_SHARES
    section("git.checkout", "git clone --depth=50 https://example.invalid/repo.git",
            ["Cloning into 'repo'...\n", *(f"Receiving objects: {p}% ({p * 3}/300)\r" for p in (25, 50, 75)),
             "Receiving objects: 100% (300/300), done.\n"], checkout)
    bar = "".join(f"Downloading [{'#' * i}{' ' * (20 - i)}] {i * 5}%\r" for i in range(0, 21, 4))
    section("install", "make install", [bar + "\n", f"{GREEN}Installed 42 packages{RESET}\n"], install)
    body = []
    for i in range(lines):
        ok = outcome == "passed" or i < lines - 3
        mark = f"{GREEN}PASSED{RESET}" if ok else f"{RED}FAILED{RESET}"
        body.append(f"tests/test_module_{i // 10}.py::test_case_{i} {mark}\n")
    if outcome == "failed":
        body.append(f"{RED}3 failed{RESET}, {lines - 3} passed\n")
        body.append('The command "make test" exited with 1.\n')
    elif outcome == "errored":
        body.append(f"{YELLOW}The command \"make test\" failed and exited with 2 during install.{RESET}\n")
    else:
        body.append(f"{GREEN}{lines} passed{RESET}\n")
    section("script", "make test", body, tests)
    code = {"passed": 0, "failed": 1, "errored": 2, "canceled": 143}[outcome]
    out.append((seconds, f"\nDone. Your build exited with {code}.\n"))
    return out


def fake_log(config: str, outcome: str, rng: random.Random, lines: int = 60) -> list[str]:
    """The lines of plan_log, untimed."""
    return [text for _, text in plan_log(config, outcome, rng, lines)]


def parse_job_seconds(value: str) -> tuple[float, float] | None:
    """'120-300' or '180' seconds for the long demo jobs; '0' for none."""
    low, _, high = value.partition("-")
    low_s, high_s = float(low), float(high or low)
    if low_s < 0 or high_s < low_s:
        raise ValueError(f"not a range of seconds: {value!r}")
    return None if high_s == 0 else (low_s, high_s)


@dataclass
class SimulatedWorker:
    name: str
    version: str
    queue: str
    state: str = "in_service"
    state_since: float = field(default_factory=time.monotonic)
    busy: bool = False
    mislabels: bool = False  # reports some exit-0 jobs as failed, like the 2017 worker v2.6.2
    silent_until: float = 0.0
    errors: list[dict] = field(default_factory=list)

    def become(self, state: str) -> None:
        self.state, self.state_since = state, time.monotonic()


# The version the demo's staged rollouts try and the gates halt: it reports exit-0 jobs as failed.
BAD_VERSION = "v2.6.2"

# The demo's problems: (name, how long it lasts in seconds).
PROBLEMS = [("mislabeled-jobs", 300), ("missing-image", 720), ("silent-instance", 180)]


class Fleet:
    def __init__(self, url: str, token: str, rate: float = 6.0, workers: int = 4, seed: int | None = None,
                 line_delay: float = 0.05, heartbeat_interval: float = 15.0, boot_seconds: float = 20.0,
                 problem_every: float = 0.0, build_token: str | None = None,
                 job_seconds: tuple[float, float] | None = None, long_share: float = 0.2,
                 operator_token: str | None = None, rollout_soak: float = 1.0):
        self.url, self.rate, self.line_delay = url.rstrip("/"), rate, line_delay
        # Long jobs (job_seconds, a range) stream steadily for minutes, so a newcomer can watch a tail
        # and try Cancel. The first job is one, then about `long_share` of the rest, one at a time so
        # that the short ones keep the other workers and the queue does not grow.
        self.job_seconds, self.long_share, self.long_jobs, self.long_running = job_seconds, long_share, 0, 0
        self.heartbeat_interval, self.boot_seconds = heartbeat_interval, boot_seconds
        self.problem_every = problem_every  # seconds between demo problems; 0: none
        self.missing_images: set[str] = set()
        self.lock = threading.Lock()
        self.token = token  # the workers' token: reports and heartbeats
        # Builds come from a build token where the installation has one (a worker token cannot create them).
        self.build_token = build_token or token
        self.rng = random.Random(seed)
        # Staged rollouts, with a staff user's personal token: good versions complete, BAD_VERSION halts.
        self.operator_token, self.rollout_soak = operator_token, rollout_soak
        self.good_versions = (f"v2.5.{n}" for n in itertools.count(1))
        self.workers = [SimulatedWorker(f"demo-worker-{i}", "v2.5.0", "builds.linux") for i in range(workers)]
        self.jobs: queue.Queue = queue.Queue()
        self.stopping = threading.Event()

    def api(self, client: httpx.Client, token: str | None = None) -> ApiClient:
        return ApiClient(self.url, token or self.token, client)

    def post(self, client: httpx.Client, path: str, body: dict, token: str | None = None) -> dict:
        """POST until the answer is not 'try again' (429, 503, a dropped connection)."""
        return self.api(client, token).post(path, body)

    def create_build(self, client: httpx.Client) -> None:
        repo = self.rng.choice(list(REPOSITORIES))
        matrix = REPOSITORIES[repo]
        build = self.post(client, "/api/v1/builds", {
            "repository": repo,
            "branch": self.rng.choice(BRANCHES),
            "commit": f"{self.rng.getrandbits(160):040x}",
            "message": self.rng.choice(MESSAGES),
            "author": self.rng.choice(AUTHORS),
            "event": self.rng.choice(["push", "push", "pull_request"]),
            "jobs": [{"config": {"env": c}, "queue": "builds.linux", "allow_failure": c.endswith("tip")}
                     for c in matrix],
        }, token=self.build_token)
        for job, config in zip(build["jobs"], matrix, strict=False):
            self.jobs.put((job["id"], config))

    def run_job(self, client: httpx.Client, worker: SimulatedWorker, job_id: int, config: str) -> None:
        worker.busy = True
        try:
            self._run_job(client, worker, job_id, config)
        finally:
            worker.busy = False

    def _take_long_job(self) -> bool:
        with self.lock:
            if self.job_seconds is None or self.long_running:
                return False
            if self.long_jobs and self.rng.random() >= self.long_share:
                return False
            self.long_jobs += 1
            self.long_running += 1
            return True

    def _run_job(self, client: httpx.Client, worker: SimulatedWorker, job_id: int, config: str) -> None:
        long = self._take_long_job()
        try:
            if long:
                seconds = self.rng.uniform(*self.job_seconds)
                lines = max(60, int(seconds * 2))
            else:
                lines = self.rng.randint(30, 120)
                seconds = lines / 5 * self.line_delay * self.rng.uniform(1, 2)
            self._stream_job(client, worker, job_id, config, seconds, lines, steady=long)
        finally:
            if long:
                with self.lock:
                    self.long_running -= 1

    def _stream_job(self, client: httpx.Client, worker: SimulatedWorker, job_id: int, config: str, seconds: float,
                    lines: int, steady: bool) -> None:
        outcome = self.rng.choices(["passed", "failed", "errored"], weights=[80, 15, 5])[0]
        who = {"worker": worker.name, "worker_version": worker.version}
        self.post(client, f"/api/v1/jobs/{job_id}/state", {"state": "received", **who})
        self.post(client, f"/api/v1/jobs/{job_id}/state", {"state": "started", **who})
        started = time.monotonic()
        plan = plan_log(config, outcome, self.rng, lines=lines, seconds=seconds)
        log = LogStream(self.api(client), job_id)
        # Parts are sent when their planned time comes: a second's worth of lines each for a long job,
        # five lines each for a short one.
        chunk, due = [], 0.0
        for i, (offset, line) in enumerate(plan):
            last = i == len(plan) - 1
            chunk.append(line)
            if not last:
                if steady and plan[i + 1][0] - due < 1.0:
                    continue
                if not steady and len(chunk) < 5:
                    continue
            wait = started + offset - time.monotonic()
            if wait > 0 and self.stopping.wait(wait):
                return
            log.send("".join(chunk), final=last)
            chunk, due = [], offset
            if log.cancel:
                outcome = "canceled"
                log.send(f"\n{YELLOW}Cancelled by request.{RESET}\n", final=True)
                break
        log.finish()  # every part stored before the job is reported finished
        code = {"passed": 0, "failed": 1, "errored": 2, "canceled": 143}[outcome]
        if worker.mislabels and outcome == "passed" and self.rng.random() < 0.5:
            outcome = "failed"  # the script exited 0; this worker version reports a failure anyway
        self.post(client, f"/api/v1/jobs/{job_id}/state", {"state": outcome, "exit_code": code, **who})

    def worker_loop(self, worker: SimulatedWorker) -> None:
        with httpx.Client() as client:
            while not self.stopping.is_set():
                if worker.state != "in_service" or time.monotonic() < worker.silent_until:
                    self.stopping.wait(0.5)  # booting, draining or crashed: takes no jobs
                    continue
                try:
                    job_id, config = self.jobs.get(timeout=0.5)
                except queue.Empty:
                    continue
                try:
                    self.run_job(client, worker, job_id, config)
                except Superseded:
                    pass  # restarted by staff: this attempt is over
                except (httpx.HTTPError, Refused, TimeoutError) as e:
                    print(f"{worker.name}: {e}")
                finally:
                    self.jobs.task_done()

    # --- heartbeats, rollouts and demo problems -----------------------------------------------------

    def heartbeat(self, client: httpx.Client, worker: SimulatedWorker) -> None:
        if time.monotonic() < worker.silent_until:
            return  # a crashed host says nothing
        with self.lock:
            if worker.state == "starting":
                if worker.version in self.missing_images:
                    worker.errors.append({"at": datetime.now(UTC).isoformat(), "message": IMAGE_PULL_ERROR.format(
                        version=worker.version, request_id=uuid.uuid4())})
                elif time.monotonic() - worker.state_since >= self.boot_seconds:
                    worker.become("in_service")
            if worker.state == "draining" and not worker.busy:
                worker.become("stopped")
            errors, worker.errors = worker.errors, []
        answer = self.post(client, f"/api/v1/workers/{worker.name}/heartbeat", {
            "version": worker.version, "backend": "docker", "host": f"{worker.name}.demo.internal",
            "queue": worker.queue, "pool_size": 1, "busy": int(worker.busy), "state": worker.state,
            "errors": errors})
        with self.lock:
            if answer["drain"] and worker.state == "in_service":
                worker.become("draining")
            elif not answer["drain"] and worker.state in ("draining", "stopped"):
                worker.become("in_service")
            wanted = answer["desired_version"]
            rolling = any(w.state == "starting" for w in self.workers)
            if wanted and wanted != worker.version and worker.state == "in_service" and not worker.busy \
                    and not rolling:
                # Replace one instance at a time, as an autoscaler would: it boots on the new version.
                worker.version, worker.mislabels = wanted, wanted == BAD_VERSION
                worker.become("starting")

    def start_problem(self, name: str) -> SimulatedWorker:
        with self.lock:
            worker = self.rng.choice([w for w in self.workers if w.state == "in_service"] or self.workers)
            if name == "mislabeled-jobs":
                worker.mislabels, worker.version = True, "v2.6.2"
            elif name == "missing-image":
                worker.version = "v2.4.9"  # a tag that was never pushed to this registry
                self.missing_images.add(worker.version)
                worker.become("starting")
            elif name == "silent-instance":
                worker.silent_until = time.monotonic() + dict(PROBLEMS)[name]
        print(f"demo fleet: problem '{name}' on {worker.name}", flush=True)
        return worker

    def end_problem(self, name: str, worker: SimulatedWorker) -> None:
        with self.lock:
            if name == "mislabeled-jobs":
                worker.mislabels, worker.version = False, self.base_version
                worker.become("starting")  # restarted on the good version
            elif name == "missing-image":
                self.missing_images.discard(worker.version)  # the tag got published; it boots now
        print(f"demo fleet: problem '{name}' over", flush=True)

    def heartbeat_loop(self) -> None:
        problems = itertools.cycle(PROBLEMS)
        next_problem = time.monotonic() + self.problem_every
        current: tuple[str, SimulatedWorker, float] | None = None
        with httpx.Client() as client:
            while not self.stopping.is_set():
                now = time.monotonic()
                if current and now >= current[2]:
                    self.end_problem(current[0], current[1])
                    current, next_problem = None, now + self.problem_every
                if self.problem_every and current is None and now >= next_problem:
                    name, duration = next(problems)
                    current = (name, self.start_problem(name), now + duration)
                for worker in self.workers:
                    try:
                        self.heartbeat(client, worker)
                    except (httpx.HTTPError, Refused, TimeoutError) as e:
                        print(f"{worker.name}: heartbeat failed: {e}")
                self.stopping.wait(self.heartbeat_interval)

    def rollout(self, client: httpx.Client, version: str) -> str:
        """Roll `version` out in stages through the API, as staff would, and wait for the outcome."""
        queue = self.workers[0].queue
        plan = self.post(client, f"/api/v1/queues/{queue}/rollouts", {
            "version": version, "stages": ["1", "50%", "100%"], "soak_minutes": self.rollout_soak, "confirm": True},
            token=self.operator_token)
        print(f"demo fleet: rollout {plan['id']} of {version} started: {plan['url']}", flush=True)
        while not self.stopping.wait(self.heartbeat_interval):
            current = self.api(client, self.operator_token).get(f"/api/v1/queues/{queue}/rollouts/current")
            if current["state"] not in ("running", "paused"):
                print(f"demo fleet: rollout {plan['id']} of {version} {current['state']}"
                      + (f": {current['reason']}" if current["reason"] else ""), flush=True)
                if current["state"] == "completed":
                    with self.lock:
                        self.base_version = version
                return current["state"]
        return "stopped"

    def rollout_loop(self) -> None:
        """A good version, then the bad one, then a pause; again and again."""
        with httpx.Client() as client:
            while not self.stopping.wait(60):
                try:
                    self.rollout(client, next(self.good_versions))
                    if self.stopping.wait(120):
                        return
                    self.rollout(client, BAD_VERSION)
                except (httpx.HTTPError, Refused, TimeoutError) as e:
                    print(f"demo fleet: rollout failed: {e}", flush=True)
                self.stopping.wait(max(self.problem_every, 600))

    def run(self, builds: int | None = None) -> None:
        self.base_version = self.workers[0].version if self.workers else "v2.5.0"
        threads = [threading.Thread(target=self.worker_loop, args=(w,), daemon=True) for w in self.workers]
        threads.append(threading.Thread(target=self.heartbeat_loop, daemon=True))
        if self.operator_token:
            threads.append(threading.Thread(target=self.rollout_loop, daemon=True))
        for t in threads:
            t.start()
        made = 0
        with httpx.Client() as client:
            try:
                while not self.stopping.is_set() and (builds is None or made < builds):
                    try:
                        self.create_build(client)
                        made += 1
                    except (httpx.HTTPError, Refused, TimeoutError) as e:
                        print(f"fleet: could not create a build: {e}")
                    self.stopping.wait(self.rng.expovariate(self.rate / 60.0) if self.rate > 0 else 1)
                if builds is not None:
                    self.jobs.join()
            finally:
                self.stopping.set()
        for t in threads:
            t.join(timeout=30)
