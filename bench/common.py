"""What every benchmark needs: processes it starts and stops, a fresh database, a server coming up."""

import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

BASE_DIR = Path(__file__).resolve().parents[1]


def start(args: list[str], env: dict) -> subprocess.Popen:
    """A Python subprocess in the project folder; BENCH_QUIET=1 hides its stderr."""
    return subprocess.Popen([sys.executable, *args], cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE if os.getenv("BENCH_QUIET") else None)


def stop(*processes: subprocess.Popen) -> None:
    for p in processes:
        p.terminate()
    for p in processes:
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()


def manage(*args: str, env: dict) -> str:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


async def wait_listening(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(300):
            try:
                await client.get(url)
                return
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


class CpuMeter:
    """CPU seconds spent by groups of processes between start() and stop(), read from /proc (Linux): each
    named process with its descendants, plus every PostgreSQL and Redis server process on the machine (a
    shared server's other clients count too, so use it on a quiet machine). Where the time goes decides
    what is worth optimizing: on two cores under load, any process's CPU slows all the others."""

    SERVERS = {"postgres": "postgres", "redis": "redis-server"}

    def __init__(self, **processes: int) -> None:
        self.processes = processes  # name -> pid
        self.started: dict[str, float] = {}

    @staticmethod
    def _read(pid: int) -> tuple[float, str, list[int]]:
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            children = []
            for task in os.listdir(f"/proc/{pid}/task"):
                with open(f"/proc/{pid}/task/{task}/children") as f:
                    children += [int(c) for c in f.read().split()]
            with open(f"/proc/{pid}/comm") as f:
                comm = f.read().strip()
        except OSError:  # gone, or not Linux
            return 0.0, "", []
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"), comm, children

    def _tree(self, pid: int) -> float:
        cpu, _, children = self._read(pid)
        return cpu + sum(self._tree(child) for child in children)

    def _sample(self) -> dict[str, float]:
        sample = {name: self._tree(pid) for name, pid in self.processes.items()}
        usage = os.times()
        sample["bench client"] = usage.user + usage.system
        for name in self.SERVERS:
            sample[name] = 0.0
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                cpu, comm, _ = self._read(int(entry))
                for name, server in self.SERVERS.items():
                    if comm == server:
                        sample[name] += cpu
        return sample

    def start(self) -> None:
        self.started = self._sample()

    def stop(self) -> dict[str, float]:
        ended = self._sample()
        return {name: ended[name] - self.started.get(name, 0.0) for name in ended}


def wait_celery(env: dict, seconds: float = 120) -> None:
    """Until a Celery worker answers a ping. Its start-up (Django's set-up, the checks, forking the pool)
    takes seconds of CPU on this machine; started beside the web server, it would still be running while
    the measured load begins, which no sustained system pays."""
    script = ("from buildboard.celery import app\n"
              "while not app.control.ping(timeout=0.5):\n"
              "    pass\n")
    subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=env, check=True, timeout=seconds,
                   capture_output=True)


def prepare_database(url: str) -> None:
    """A fresh benchmark database each run, so figures do not depend on earlier runs."""
    if not url.startswith("postgres"):
        return
    import psycopg

    name = url.rsplit("/", 1)[1]
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def scoped_tokens(owner: str, env: dict) -> tuple[str, str]:
    """A build token of `owner` (to create the build) and a worker token of the default queue (for the hot
    path), as a scoped installation runs them."""
    stamp = time.time_ns()
    subprocess.run([sys.executable, "manage.py", "createorg", owner], cwd=BASE_DIR, env=env, capture_output=True)
    build = manage("create_token", f"bench-build-{stamp}", "--organization", owner, env=env)
    worker = manage("create_token", f"bench-worker-{stamp}", "--queue", "builds.linux", env=env)
    return build, worker
