"""bench/ingest: sustained log lines per second through HTTP -> Celery -> database.

Several simulated workers stream log parts concurrently. The same batches are sent to a bare
baseline (an ASGI endpoint that only parses them and pushes them to Redis) in the same run, and the
ratio is printed. Usage (PostgreSQL and Redis as in the README):

    .venv/bin/python bench/ingest/run.py [--clients 8] [--requests 150] [--parts 10] [--lines 40] [--rounds 3]
"""

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

import httpx

BASE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BASE_DIR))

from bench.common import (  # noqa: E402
    CpuMeter,
    manage,
    prepare_database,
    scoped_tokens,
    start,
    stop,
    wait_celery,
    wait_listening,
)
from buildboard.lib.redis_server import ensure_redis, free_port  # noqa: E402

LINE = "\x1b[32mPASSED\x1b[0m tests/test_module.py::test_case_number_{n} in 0.01s\n"


def batches(requests: int, parts: int, lines: int):
    """The same request bodies for both servers: `requests` batches of `parts` parts of `lines` lines."""
    number = 0
    for _ in range(requests):
        body = []
        for _ in range(parts):
            body.append({"number": number, "content": "".join(LINE.format(n=number * lines + i) for i in range(lines))})
            number += 1
        yield {"parts": body}


async def load(url_for, clients: int, args, headers: dict) -> float:
    """Each client streams its own job's batches sequentially; returns the elapsed seconds."""
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=60) as http:
        async def one(index: int) -> None:
            for body in batches(args.requests, args.parts, args.lines):
                r = await http.post(url_for(index), json=body)
                if r.status_code != 202:
                    raise RuntimeError(f"{r.status_code}: {r.text[:200]}")

        started = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(clients)))
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="concurrent simulated workers")
    parser.add_argument("--requests", type=int, default=150, help="requests per worker")
    parser.add_argument("--parts", type=int, default=10, help="parts per request")
    parser.add_argument("--lines", type=int, default=40, help="lines per part")
    parser.add_argument("--celery-concurrency", type=int, default=1,
                        help="Celery processes; one per spare core (the web process takes the other here)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--database-url", default=os.getenv("BENCH_DATABASE_URL",
                                                            "postgres://postgres@127.0.0.1:5432/buildboard_bench"))
    args = parser.parse_args()

    redis = ensure_redis()
    env = {**os.environ, "REDIS_URL": redis.url, "DATABASE_URL": args.database_url, "DEBUG": "False",
           "SECRET_KEY": "bench", "SECURE_SSL_REDIRECT": "False", "ALLOWED_HOSTS": "127.0.0.1,localhost",
           "CHANNEL_PREFIX": "bench", "PYTHONPATH": str(BASE_DIR)}
    total_lines = args.clients * args.requests * args.parts * args.lines
    results: dict[str, list[float]] = {"baseline": [], "accepted": [], "stored": []}
    cpu: dict[str, dict[str, list[float]]] = {"baseline": {}, "buildboard": {}}
    try:
        prepare_database(args.database_url)
        manage("migrate", "--noinput", env=env)
        tokens = scoped_tokens("bench", env)
        # Rounds alternate between the two systems, so a noisy neighbour hurts both alike.
        for _ in range(args.rounds):
            baseline_s, used = _run_baseline(args, env)
            results["baseline"].append(total_lines / baseline_s)
            for name, seconds in used.items():
                cpu["baseline"].setdefault(name, []).append(seconds)
            accepted_s, stored_s, used = _run_buildboard(args, env, tokens)
            for name, seconds in used.items():
                cpu["buildboard"].setdefault(name, []).append(seconds)
            results["accepted"].append(total_lines / accepted_s)
            results["stored"].append(total_lines / stored_s)
    finally:
        redis.stop()

    base, accepted, stored = (statistics.median(results[k]) for k in ("baseline", "accepted", "stored"))
    print(f"workload: {args.clients} workers x {args.requests} requests x {args.parts} parts x {args.lines} lines"
          f" = {total_lines:,} lines per round; medians of {args.rounds} alternating rounds")
    print(f"baseline (parse + Redis LPUSH):        {base:12,.0f} lines/s  {_all(results['baseline'])}")
    print(f"buildboard HTTP accepted:              {accepted:12,.0f} lines/s  {_all(results['accepted'])}")
    print(f"buildboard HTTP -> Celery -> database: {stored:12,.0f} lines/s  {_all(results['stored'])}")
    print(f"ratio (stored / baseline):             {stored / base:12.2f}  (target >= 0.50, and >= 10,000 lines/s)")
    for system, until in (("baseline", "all was accepted"), ("buildboard", "all was stored")):
        print(f"CPU seconds per {system} round, until {until} (median; rounds):")
        for name, seconds in sorted(cpu[system].items(), key=lambda item: -statistics.median(item[1])):
            if max(seconds) >= 0.01:
                print(f"  {name:14} {statistics.median(seconds):6.2f}  ("
                      + ", ".join(f"{s:.2f}" for s in seconds) + ")")


def _all(rates: list[float]) -> str:
    return "(rounds: " + ", ".join(f"{r:,.0f}" for r in rates) + ")"


def _run_baseline(args, env: dict) -> tuple[float, dict[str, float]]:
    """Seconds until every request was answered; the CPU seconds spent meanwhile by each process."""
    port = free_port()
    server = start(["-m", "uvicorn", "bench.ingest.baseline:app", "--port", str(port), "--log-level", "warning",
                    "--no-access-log"], env)
    try:
        asyncio.run(wait_listening(f"http://127.0.0.1:{port}/"))
        meter = CpuMeter(server=server.pid)
        meter.start()
        seconds = asyncio.run(load(lambda i: f"http://127.0.0.1:{port}/log", args.clients, args, {}))
        return seconds, meter.stop()
    finally:
        stop(server)


def _run_buildboard(args, env: dict, tokens: tuple[str, str]) -> tuple[float, float, dict[str, float]]:
    """Seconds until every request was accepted, and until every line was stored; the CPU seconds spent
    meanwhile by each process."""
    port = free_port()
    web = start(["-m", "uvicorn", "buildboard.asgi:application", "--port", str(port), "--log-level", "warning",
                 "--no-access-log"], env)
    worker = start(["-m", "celery", "-A", "buildboard", "worker", "-l", "warning", "--concurrency",
                    str(args.celery_concurrency), "--without-heartbeat", "--without-mingle", "--without-gossip"], env)
    try:
        base = f"http://127.0.0.1:{port}"
        asyncio.run(wait_listening(base + "/api/v1/openapi.json"))
        wait_celery(env)
        headers = {"Authorization": f"Bearer {tokens[1]}"}
        build = httpx.post(base + "/api/v1/builds", headers={"Authorization": f"Bearer {tokens[0]}"}, json={
            "repository": "bench/ingest", "branch": "main", "commit": "0" * 40,
            "jobs": [{"config": {}} for _ in range(args.clients)]}).json()
        job_ids = [j["id"] for j in build["jobs"]]
        meter = CpuMeter(web=web.pid, celery=worker.pid)
        meter.start()
        started = time.perf_counter()
        accepted_s = asyncio.run(load(lambda i: f"{base}/api/v1/jobs/{job_ids[i]}/log", args.clients, args, headers))
        expected = args.requests * args.parts - 1
        pending = set(job_ids)
        with httpx.Client(base_url=base, headers=headers) as client:
            while pending and time.perf_counter() - started < 600:
                for job_id in list(pending):
                    if client.get(f"/api/v1/jobs/{job_id}").json()["log"]["persisted_through"] == expected:
                        pending.discard(job_id)
                time.sleep(0.02)
        if pending:
            raise RuntimeError(f"jobs {sorted(pending)} were not fully stored")
        stored_s = time.perf_counter() - started
        return accepted_s, stored_s, meter.stop()
    finally:
        stop(web, worker)


if __name__ == "__main__":
    main()
