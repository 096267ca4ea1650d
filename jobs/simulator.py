"""A demo fleet: simulated workers that run fake builds and report them through the HTTP API only."""

import itertools
import queue
import random
import threading
import time
from dataclasses import dataclass

import httpx

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


def fake_log(config: str, outcome: str, rng: random.Random, lines: int = 60) -> list[str]:
    """Lines of a Travis-style log: folds, timers, colours, a \\r progress bar and the exit line."""
    out: list[str] = [f"{BOLD}Worker information{RESET}\n", "hostname: demo-worker\n", f"{config}\n"]
    timer = itertools.count(1)
    now = time.time_ns()

    def section(name: str, command: str, body: list[str]) -> None:
        nonlocal now
        tid = f"{next(timer):08x}"
        out.append(f"travis_fold:start:{name}\r\x1b[0K")
        out.append(f"travis_time:start:{tid}\r\x1b[0K$ {command}\n")
        out.extend(body)
        took = rng.randint(200_000_000, 9_000_000_000)
        out.append(f"\ntravis_time:end:{tid}:start={now},finish={now + took},duration={took}\r\x1b[0K")
        out.append(f"travis_fold:end:{name}\r\x1b[0K")
        now += took

    section("git.checkout", "git clone --depth=50 https://example.invalid/repo.git",
            ["Cloning into 'repo'...\n", *(f"Receiving objects: {p}% ({p * 3}/300)\r" for p in (25, 50, 75)),
             "Receiving objects: 100% (300/300), done.\n"])
    bar = "".join(f"Downloading [{'#' * i}{' ' * (20 - i)}] {i * 5}%\r" for i in range(0, 21, 4))
    section("install", "make install", [bar + "\n", f"{GREEN}Installed 42 packages{RESET}\n"])
    out.append("$ make test\n")
    for i in range(lines):
        ok = outcome == "passed" or i < lines - 3
        mark = f"{GREEN}PASSED{RESET}" if ok else f"{RED}FAILED{RESET}"
        out.append(f"tests/test_module_{i // 10}.py::test_case_{i} {mark}\n")
    if outcome == "failed":
        out.append(f"{RED}3 failed{RESET}, {lines - 3} passed\n")
    elif outcome == "errored":
        out.append(f"{YELLOW}The command \"make test\" failed and exited with 2 during install.{RESET}\n")
    else:
        out.append(f"{GREEN}{lines} passed{RESET}\n")
    code = {"passed": 0, "failed": 1, "errored": 2, "canceled": 143}[outcome]
    out.append(f"\nDone. Your build exited with {code}.\n")
    return out


@dataclass
class SimulatedWorker:
    name: str
    version: str
    queue: str


class Fleet:
    def __init__(self, url: str, token: str, rate: float = 6.0, workers: int = 4, seed: int | None = None,
                 line_delay: float = 0.05):
        self.url, self.rate, self.line_delay = url.rstrip("/"), rate, line_delay
        self.headers = {"Authorization": f"Bearer {token}"}
        self.rng = random.Random(seed)
        self.workers = [SimulatedWorker(f"demo-worker-{i}", "v2.5.0", "builds.linux") for i in range(workers)]
        self.jobs: queue.Queue = queue.Queue()
        self.stopping = threading.Event()

    def post(self, client: httpx.Client, path: str, body: dict) -> dict:
        response = client.post(self.url + path, json=body, headers=self.headers, timeout=10)
        response.raise_for_status()
        return response.json()

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
        })
        for job, config in zip(build["jobs"], matrix, strict=False):
            self.jobs.put((job["id"], config))

    def run_job(self, client: httpx.Client, worker: SimulatedWorker, job_id: int, config: str) -> None:
        outcome = self.rng.choices(["passed", "failed", "errored"], weights=[80, 15, 5])[0]
        who = {"worker": worker.name, "worker_version": worker.version}
        self.post(client, f"/api/v1/jobs/{job_id}/state", {"state": "received", **who})
        self.post(client, f"/api/v1/jobs/{job_id}/state", {"state": "started", **who})
        lines = fake_log(config, outcome, self.rng, lines=self.rng.randint(30, 120))
        number, chunk = 0, []
        for i, line in enumerate(lines):
            chunk.append(line)
            if len(chunk) >= 5 or i == len(lines) - 1:
                ack = self.post(client, f"/api/v1/jobs/{job_id}/log", {"parts": [
                    {"number": number, "content": "".join(chunk), "final": i == len(lines) - 1}]})
                number, chunk = number + 1, []
                if ack.get("cancel"):
                    outcome = "canceled"
                    break
                time.sleep(self.line_delay * self.rng.uniform(0.5, 3))
        code = {"passed": 0, "failed": 1, "errored": 2, "canceled": 143}[outcome]
        self.post(client, f"/api/v1/jobs/{job_id}/state", {"state": outcome, "exit_code": code, **who})

    def worker_loop(self, worker: SimulatedWorker) -> None:
        with httpx.Client() as client:
            while not self.stopping.is_set():
                try:
                    job_id, config = self.jobs.get(timeout=0.5)
                except queue.Empty:
                    continue
                try:
                    self.run_job(client, worker, job_id, config)
                except httpx.HTTPError as e:
                    print(f"{worker.name}: {e}")
                finally:
                    self.jobs.task_done()

    def run(self, builds: int | None = None) -> None:
        threads = [threading.Thread(target=self.worker_loop, args=(w,), daemon=True) for w in self.workers]
        for t in threads:
            t.start()
        made = 0
        with httpx.Client() as client:
            try:
                while not self.stopping.is_set() and (builds is None or made < builds):
                    try:
                        self.create_build(client)
                        made += 1
                    except httpx.HTTPError as e:
                        print(f"fleet: could not create a build: {e}")
                    self.stopping.wait(self.rng.expovariate(self.rate / 60.0) if self.rate > 0 else 1)
                if builds is not None:
                    self.jobs.join()
            finally:
                self.stopping.set()
        for t in threads:
            t.join(timeout=30)
