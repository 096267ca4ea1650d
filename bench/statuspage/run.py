"""bench/statuspage: requests per second for /status/ and /api/v2/summary.json, beside a static file of
the same size served by the same server (uvicorn running buildboard.asgi, WhiteNoise for static) in
the same run. Target: each page at least 50% of the static file's rate.

Production-like settings (DEBUG=False, collected static files), a seeded database (SQLite in a temp
dir unless DATABASE_URL is set) and a private Redis unless REDIS_URL is set. Load comes from wrk on
loopback when installed (`apt-get install wrk`), else from a bounded asyncio httpx client.

    .venv/bin/python bench/statuspage/run.py [--seconds 8] [--connections 16] [--rounds 3]
"""

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

BASE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BASE_DIR))

from buildboard.lib.redis_server import ensure_redis, free_port  # noqa: E402

STATIC_SUBDIR = "_bench_statuspage"  # inside STATIC_ROOT (generated, git-ignored); removed afterwards
PATHS = {"status": "/status/", "summary": "/api/v2/summary.json"}


def manage(*args: str, env: dict) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True,
                   stdout=subprocess.DEVNULL)


def serve(env: dict, port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "buildboard.asgi:application", "--host", "127.0.0.1", "--port", str(port),
         "--log-level", "warning", "--no-access-log"], cwd=BASE_DIR, env=env)
    for _ in range(300):
        try:
            httpx.get(f"http://127.0.0.1:{port}/status/seq.json", timeout=1)
            return process
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("uvicorn did not come up")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


def wrk(url: str, seconds: int, connections: int) -> float:
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", url], capture_output=True, text=True,
                         check=True).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"{url} answered errors under load:\n{out}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))


async def httpx_load(url: str, seconds: int, connections: int) -> float:
    """Fallback generator: `connections` clients in a loop for `seconds`; bounded in time and count."""
    done, deadline = 0, time.perf_counter() + seconds
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=connections), timeout=10) as http:
        async def client() -> None:
            nonlocal done
            while time.perf_counter() < deadline and done < 1_000_000:
                response = await http.get(url)
                if response.status_code != 200:
                    raise RuntimeError(f"{url}: HTTP {response.status_code}")
                done += 1

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(connections)))
        return done / (time.perf_counter() - started)


def measure(url: str, seconds: int, connections: int) -> float:
    if shutil.which("wrk"):
        return wrk(url, seconds, connections)
    return asyncio.run(httpx_load(url, seconds, connections))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=8, help="per measurement")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3, help="rounds alternate the URLs; medians are reported")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench-statuspage-"))
    redis = ensure_redis()
    static_root = BASE_DIR / "staticfiles"
    env = {**os.environ, "REDIS_URL": redis.url, "CHANNEL_PREFIX": f"benchstatus{os.getpid()}", "DEBUG": "False",
           "SECURE_SSL_REDIRECT": "False", "SITE_ROOT": "http://127.0.0.1", "LOG_LEVEL": "ERROR",
           "DATABASE_URL": os.getenv("DATABASE_URL") or f"sqlite:///{workdir / 'bench.sqlite3'}"}
    server = None
    try:
        if os.getenv("DATABASE_URL"):
            print("Using DATABASE_URL; the benchmark adds rows to it.", file=sys.stderr)
        manage("migrate", "--noinput", "-v0", env=env)
        subprocess.run([sys.executable, "-m", "bench.statuspage.seed"], cwd=BASE_DIR, env=env, check=True)
        manage("collectstatic", "--noinput", "-v0", env=env)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        # First run: learn the pages' sizes, so the static files can match them byte for byte.
        server = serve(env, port)
        sizes = {name: len(httpx.get(base + path).content) for name, path in PATHS.items()}
        stop(server)
        target = static_root / STATIC_SUBDIR
        target.mkdir(exist_ok=True)
        for name, size in sizes.items():
            (target / f"{name}.html").write_bytes(b"x" * size)
        server = serve(env, port)  # WhiteNoise indexes STATIC_ROOT at start-up
        urls = {name: base + path for name, path in PATHS.items()}
        urls |= {f"static-{name}": f"{base}/static/{STATIC_SUBDIR}/{name}.html" for name in PATHS}
        for url in urls.values():
            assert httpx.get(url).status_code == 200, url
            measure(url, 1, args.connections)  # warm up: caches filled, connections made
        results: dict[str, list[float]] = {name: [] for name in urls}
        for _ in range(args.rounds):
            for name, url in urls.items():
                results[name].append(measure(url, args.seconds, args.connections))
        rps = {name: statistics.median(values) for name, values in results.items()}
        generator = "wrk" if shutil.which("wrk") else "httpx"
        print(f"\nbench/statuspage — {generator}, {args.connections} connections, {args.seconds}s x {args.rounds} "
              "rounds (medians), one uvicorn process")
        ok = True
        for name in PATHS:
            ratio = rps[name] / rps[f"static-{name}"]
            ok &= ratio >= 0.5
            print(f"  {PATHS[name]:<24} {sizes[name]:>7} bytes  {rps[name]:>8.0f} req/s   "
                  f"static file same size {rps['static-' + name]:>8.0f} req/s   ratio {ratio:5.0%}")
        print(f"Target >= 50%: {'met' if ok else 'NOT met'}")
        return 0
    finally:
        if server:
            stop(server)
        shutil.rmtree(static_root / STATIC_SUBDIR, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
        redis.stop()


if __name__ == "__main__":
    sys.exit(main())
