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
