"""bench/tail: latency from a worker's log POST to the frame reaching the viewers of that job's page.

Setup: one uvicorn process, a real Celery worker, Redis and PostgreSQL. 50 jobs stream log parts
over the worker API while 300 websocket viewers (6 per job) watch /ws/jobs/N/. For every part and
every viewer, latency = frame arrival - moment the POST was sent. Printed beside a bare baseline
measured in the same run: one Redis PUBLISH reaching a subscriber, plus one bare HTTP POST round
trip to a do-nothing ASGI app under the same uvicorn, both back to back. For reference (not the target's
baseline), the bare POST is also timed sent at the load's pace: on this 2-core VM a process woken after
tens of milliseconds asleep answers slower than one kept busy. Each job first reports "started": the time from
that POST to its job.state frame is printed too (state changes are applied in the database, forward
only, so they are announced after the Celery hop and the commit, unlike log parts). The first part of each
job, sent right after its state POST, is printed apart from the rest: the 50 jobs start within 2 s, and the
p99 is made of those first parts. So are the CPU seconds each process spent while the jobs streamed. The load
starts once the Celery worker answers a ping (its start-up would otherwise run in the first seconds). Then: how many
idle viewers one server process holds (connections opened until --idle-max, all must still get a frame).

The default rate, one POST every 2 s per job (25 POSTs/s in all), is a busy fleet flushing logs; at
--rate 1 a single uvicorn process on a 2-core machine saturates in the worker API and latency climbs
to seconds, so that is worth running too when tuning ingestion.

    .venv/bin/python bench/tail/run.py [--jobs 50] [--viewers 300] [--seconds 15] [--rate 0.5] [--idle-max 1500]
                                       [--runs 3] [--profile [--profile-top 25]]

--runs N repeats the whole run (fresh database, Redis and processes each time) and prints the spread
(min / median / max of p50 and p99), as p99 swings from run to run on a shared 2-core machine.
--profile samples the uvicorn process with py-spy (every busy thread) while the jobs stream and prints
the frames with the most own and inclusive time.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import redis.asyncio as aioredis
import websockets

BASE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BASE_DIR))

from bench.common import (  # noqa: E402
    CpuMeter,
    prepare_database,
    scoped_tokens,
    start,
    stop,
    wait_celery,
    wait_listening,
)
from buildboard.lib.redis_server import ensure_redis, free_port  # noqa: E402


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------------------------------------------
# Baseline


async def baseline(redis_url: str, env: dict, samples: int,
                   pace: float) -> tuple[list[float], list[float], list[float]]:
    """Latencies (ms) of a Redis PUBLISH reaching a subscriber, of a bare HTTP POST round trip (both back to
    back: the baseline of the target), and of the bare POST sent once every `pace` seconds, as the load's
    POSTs reach the server (for reference: on a VM, processes that sleep between requests wake slower)."""
    client = aioredis.from_url(redis_url)
    pubsub = client.pubsub()
    await pubsub.subscribe("bench:tail")
    await pubsub.get_message(timeout=1)  # the subscribe confirmation
    publish = []
    for i in range(samples):
        sent = time.perf_counter()
        await client.publish("bench:tail", str(i))
        while (await pubsub.get_message(timeout=1)) is None:
            pass
        publish.append((time.perf_counter() - sent) * 1000)
    await pubsub.aclose()
    await client.aclose()

    port = free_port()
    server = start(["-m", "uvicorn", "bench.tail.baseline:app", "--port", str(port), "--log-level", "warning",
                    "--no-access-log"], env)
    try:
        await wait_listening(f"http://127.0.0.1:{port}/")
        body = {"parts": [{"number": 0, "content": "x" * 200}]}
        post, paced = [], []
        async with httpx.AsyncClient() as http:
            for _ in range(samples):
                sent = time.perf_counter()
                await http.post(f"http://127.0.0.1:{port}/log", json=body)
                post.append((time.perf_counter() - sent) * 1000)
            for _ in range(min(samples, 100)):
                await asyncio.sleep(pace)
                sent = time.perf_counter()
                await http.post(f"http://127.0.0.1:{port}/log", json=body)
                paced.append((time.perf_counter() - sent) * 1000)
    finally:
        stop(server)
    return publish, post, paced


# ---------------------------------------------------------------------------------------------------
# Streaming under load


class Viewer:
    def __init__(self, ws_url: str, origin: str):
        self.ws_url, self.origin = ws_url, origin
        self.arrivals: dict[int, float] = {}
        self.started: float | None = None  # when the job.state frame saying "started" arrived
        self.ready = asyncio.Event()

    async def run(self, stop_event: asyncio.Event) -> None:
        async with websockets.connect(self.ws_url, origin=self.origin, max_size=None, open_timeout=60) as ws:
            self.ready.set()
            while not stop_event.is_set():
                try:
                    raw = await asyncio.wait_for(ws.recv(), 0.5)
                except TimeoutError:
                    continue
                now = time.perf_counter()
                frame = json.loads(raw)
                if frame["type"] == "log.parts":
                    for part in frame["parts"]:
                        self.arrivals.setdefault(part["number"], now)
                elif frame["type"] == "job.state" and frame["state"] == "started" and self.started is None:
                    self.started = now


async def watch(ws_base: str, origin: str, job_ids: list[int], viewers_per_job: int, commands) -> None:
    """The viewers' side, in a process of its own: connect every viewer, say "ready", collect frames until
    told to stop, then send back when each part (and each "started" state) arrived at each viewer."""
    viewers = {job_id: [Viewer(f"{ws_base}/ws/jobs/{job_id}/", origin) for _ in range(viewers_per_job)]
               for job_id in job_ids}
    stop_event = asyncio.Event()
    tasks = []
    for group in viewers.values():
        for viewer in group:
            tasks.append(asyncio.create_task(viewer.run(stop_event)))
            await asyncio.sleep(0.002)  # a gentle ramp, as page loads would be
    ready = asyncio.ensure_future(asyncio.gather(*(v.ready.wait() for g in viewers.values() for v in g)))
    done, _ = await asyncio.wait([ready, *tasks], timeout=120, return_when=asyncio.FIRST_COMPLETED)
    if ready not in done:
        failed = next((t for t in done if t.exception()), None)
        commands.send(("failed", repr(failed.exception()) if failed else "viewers did not connect in time"))
        return
    commands.send(("ready", None))
    await asyncio.to_thread(commands.recv)  # "stop"
    stop_event.set()
    await asyncio.gather(*tasks)
    commands.send(("arrivals", {job_id: [(v.arrivals, v.started) for v in group]
                                for job_id, group in viewers.items()}))


def _watch_process(ws_base: str, origin: str, job_ids: list[int], viewers_per_job: int, commands) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    asyncio.run(watch(ws_base, origin, job_ids, viewers_per_job, commands))


async def stream(base: str, headers: dict, job_ids: list[int], viewers_per_job: int, seconds: float,
                 rate: float, on_start=None) -> tuple[list[float], list[float], int, int]:
    """(part number, latency in ms) of every part at every viewer and of each POST's answer; parts sent;
    (viewer, part) pairs missing; latencies of the "started" state at every viewer.

    The viewers run in a process of their own, as browsers are not the workers: in the workers' process
    their 2,400 frames would share one event loop with the POSTs, and each answer would be read only after
    the frames it caused (which inflated both figures). Arrival and send times are time.perf_counter(),
    CLOCK_MONOTONIC on Linux, so they compare across the two processes."""
    commands, theirs = multiprocessing.get_context("spawn").Pipe()
    watcher = multiprocessing.get_context("spawn").Process(
        target=_watch_process, args=(base.replace("http://", "ws://"), base, job_ids, viewers_per_job, theirs))
    watcher.start()
    try:
        what, detail = await asyncio.to_thread(commands.recv)
        if what != "ready":
            raise RuntimeError(f"viewers: {detail}")
        await asyncio.sleep(1)
        if on_start is not None:
            on_start()
        return await _stream_parts(base, headers, job_ids, seconds, rate, commands)
    finally:
        watcher.join(30)
        if watcher.is_alive():
            watcher.kill()


async def _stream_parts(base: str, headers: dict, job_ids: list[int], seconds: float, rate: float, commands):
    sent_at: dict[tuple[int, int], float] = {}
    state_sent: dict[int, float] = {}
    answered: list[float] = []
    retried: list[int] = []
    limits = httpx.Limits(max_connections=len(job_ids))
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as http:
        async def streamer(index: int, job_id: int) -> None:
            await asyncio.sleep(index / len(job_ids) / rate)  # spread the jobs over the interval
            # A state change: applied in the database (forward-only), so announced after the Celery hop.
            state_sent[job_id] = time.perf_counter()
            r = await http.post(f"{base}/api/v1/jobs/{job_id}/state", json={"state": "started"})
            if r.status_code != 202:
                raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
            number, deadline = 0, time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                tick = time.perf_counter()
                content = "".join(f"\x1b[32mok\x1b[0m step {number} line {i} of this job's output\n" for i in range(5))
                sent_at[(job_id, number)] = time.perf_counter()
                body = {"parts": [{"number": number, "content": content}]}
                for attempt in range(3):  # as a worker would: parts are idempotent, so resend on a dropped connection
                    try:
                        r = await http.post(f"{base}/api/v1/jobs/{job_id}/log", json=body)
                        break
                    except httpx.TransportError:
                        if attempt == 2:
                            raise
                        retried.append(job_id)
                if r.status_code != 202:
                    raise RuntimeError(f"{r.status_code}: {r.text[:200]}")
                answered.append((number, (time.perf_counter() - sent_at[(job_id, number)]) * 1000))
                number += 1
                await asyncio.sleep(max(0.0, 1 / rate - (time.perf_counter() - tick)))

        await asyncio.gather(*(streamer(i, job_id) for i, job_id in enumerate(job_ids)))
    await asyncio.sleep(3)  # let the last frames arrive
    commands.send("stop")
    what, arrivals = await asyncio.to_thread(commands.recv)

    latencies, missing = [], 0
    states = [(started - state_sent[job_id]) * 1000 for job_id, group in arrivals.items() for _, started in group
              if started is not None]
    for job_id, group in arrivals.items():
        numbers = [n for (j, n) in sent_at if j == job_id]
        for parts, _ in group:
            for number in numbers:
                arrived = parts.get(number)
                if arrived is None:
                    missing += 1
                else:
                    latencies.append((number, (arrived - sent_at[(job_id, number)]) * 1000))
    if retried:
        print(f"  {len(retried)} POSTs were resent after a dropped connection")
    return latencies, answered, len(sent_at), missing, states


async def idle_capacity(base: str, job_id: int, maximum: int, server_pid: int, announce) -> tuple[int, float, int]:
    """Open idle viewers until `maximum` (or failure); returns how many held, server RSS, how many got a frame."""
    ws_url = base.replace("http://", "ws://") + f"/ws/jobs/{job_id}/"
    sockets = []
    try:
        for _ in range(maximum):
            try:
                ws = await websockets.connect(ws_url, origin=base, open_timeout=20, max_size=None)
                await asyncio.wait_for(ws.recv(), 20)  # the job.state frame every viewer gets first
            except (OSError, TimeoutError, websockets.WebSocketException) as error:
                print(f"  stopped opening viewers at {len(sockets)}: {error!r}")
                break
            sockets.append(ws)
        await asyncio.sleep(2)
        rss = rss_mb(server_pid)
        await announce()

        async def got_frame(ws) -> bool:
            try:
                while True:
                    frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
                    if frame["type"] == "log.parts":
                        return True
            except (TimeoutError, websockets.WebSocketException):
                return False

        reached = sum(await asyncio.gather(*(got_frame(ws) for ws in sockets)))
        return len(sockets), rss, reached
    finally:
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


# ---------------------------------------------------------------------------------------------------


class Profiler:
    """py-spy sampling the uvicorn process (every thread, idle ones left out) while the jobs stream."""

    def __init__(self, pid: int, seconds: float, out: Path):
        self.out = out
        py_spy = Path(sys.executable).with_name("py-spy")
        self.process = subprocess.Popen(
            [str(py_spy if py_spy.exists() else "py-spy"), "record", "--pid", str(pid), "--duration",
             str(max(1, int(seconds))), "--rate", "100", "--format", "raw", "--output", str(out), "--nonblocking"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def summary(self, top: int) -> str:
        _, errors = self.process.communicate(timeout=60)
        if self.process.returncode or not self.out.exists():
            return f"  py-spy failed ({self.process.returncode}): {errors.strip()[-400:]}"
        own: dict[str, int] = {}
        inclusive: dict[str, int] = {}
        total = 0
        for line in self.out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack:
                continue
            n = int(count)
            total += n
            frames = [_frame_name(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
            if not frames:
                continue
            own[frames[-1]] = own.get(frames[-1], 0) + n
            for frame in set(frames) - _PLUMBING:
                inclusive[frame] = inclusive.get(frame, 0) + n
        if not total:
            return "  py-spy took no samples"

        def table(counts: dict[str, int]) -> list[str]:
            rows = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
            return [f"  {100 * n / total:5.1f}%  {name}" for name, n in rows]

        return "\n".join([f"profile of the uvicorn process: {total} samples (100/s, busy threads), raw: {self.out}",
                          " own time (the frame itself was running):", *table(own),
                          " inclusive time (the frame was on the stack):", *table(inclusive)])


# Frames under everything (thread start, the event loop, the command line), left out of the inclusive table.
_PLUMBING = {"Thread.run (threading.py)", "Thread._bootstrap (threading.py)",
             "Thread._bootstrap_inner (threading.py)", "_worker (futures/thread.py)",
             "_WorkItem.run (futures/thread.py)",
             "Runner.run (asyncio/runners.py)", "run (asyncio/runners.py)", "asyncio_run (uvicorn/_compat.py)",
             "Server.run (uvicorn/server.py)", "main (uvicorn/main.py)", "<module> (uvicorn/__main__.py)",
             "run (uvicorn/main.py)", "Command.invoke (click/core.py)", "Context.invoke (click/core.py)",
             "BaseCommand.main (click/core.py)", "Command.main (click/core.py)", "__call__ (click/core.py)",
             "BaseEventLoop.run_forever (asyncio/base_events.py)",
             "BaseEventLoop.run_until_complete (asyncio/base_events.py)",
             "_run_module_as_main (<frozen runpy>)", "_run_code (<frozen runpy>)"}


def _frame_name(frame: str) -> str:
    """'function (path/to/file.py:123)' -> 'function (file.py)', so lines of one function add up."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) > 1 else path
    return f"{name} ({short})"


def run_once(args, run: int, profile: bool) -> dict:
    """One whole run: a fresh database, Redis, web server and Celery worker; returns its figures."""
    redis = ensure_redis()
    env = {**os.environ, "REDIS_URL": redis.url, "DATABASE_URL": args.database_url, "DEBUG": "False",
           "SECRET_KEY": "bench", "SECURE_SSL_REDIRECT": "False", "ALLOWED_HOSTS": "127.0.0.1,localhost",
           "CHANNEL_PREFIX": "benchtail", "PYTHONPATH": str(BASE_DIR)}
    processes = []
    profiler = None
    held = rss = reached = None
    try:
        prepare_database(args.database_url)
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=BASE_DIR, env=env, check=True)
        build_token, token = scoped_tokens("bench", env)
        publish, post, paced = asyncio.run(baseline(redis.url, env, args.baseline_samples, 1 / (args.jobs * args.rate)))

        port = free_port()
        web = start(["-m", "uvicorn", "buildboard.asgi:application", "--port", str(port), "--log-level", "warning",
                     "--no-access-log"], env)
        worker = start(["-m", "celery", "-A", "buildboard", "worker", "-l", "warning", "--concurrency",
                        str(args.celery_concurrency), "--without-heartbeat", "--without-mingle",
                        "--without-gossip"], env)
        processes = [web, worker]
        base = f"http://127.0.0.1:{port}"
        asyncio.run(wait_listening(base + "/api/v1/openapi.json"))
        wait_celery(env)
        headers = {"Authorization": f"Bearer {token}"}
        build = httpx.post(base + "/api/v1/builds", headers={"Authorization": f"Bearer {build_token}"},
                           timeout=30, json={
            "repository": "bench/tail", "branch": "main", "commit": "0" * 40,
            "jobs": [{"config": {}} for _ in range(args.jobs + 1)]}).json()
        job_ids = [j["id"] for j in build["jobs"]]
        idle_job = job_ids.pop()

        meter = CpuMeter(web=web.pid, celery=worker.pid)

        def on_start():  # once the viewers are in, so the figures are of the streaming itself
            nonlocal profiler
            meter.start()
            if profile:
                profiler = Profiler(web.pid, args.seconds, Path(f"/tmp/bench-tail-profile-{os.getpid()}-{run}.txt"))

        latencies, answered, sent, missing, states = asyncio.run(stream(
            base, headers, job_ids, args.viewers // args.jobs, args.seconds, args.rate, on_start=on_start))
        cpu = meter.stop()

        def announce():
            return asyncio.to_thread(httpx.post, f"{base}/api/v1/jobs/{idle_job}/log", headers=headers,
                                     json={"parts": [{"number": 0, "content": "hello, idle viewers\n"}]})

        if args.idle_max:
            held, rss, reached = asyncio.run(idle_capacity(base, idle_job, args.idle_max, web.pid, announce))
    finally:
        stop(*processes)
        redis.stop()
    return {"publish": publish, "post": post, "paced": paced, "latencies": latencies, "answered": answered,
            "sent": sent, "missing": missing, "states": states, "jobs": len(job_ids), "held": held, "rss": rss,
            "reached": reached, "cpu": cpu,
            "profile": profiler.summary(args.profile_top) if profiler else None}


def report(args, figures: dict) -> dict:
    publish, post = figures["publish"], figures["post"]
    latencies, answered = ([ms for _, ms in figures[k]] for k in ("latencies", "answered"))
    base_p50 = statistics.median(publish) + statistics.median(post)
    p50, p99 = statistics.median(latencies), pct(latencies, 0.99)
    load = os.getloadavg()
    print(f"baseline: Redis PUBLISH->subscriber p50 {statistics.median(publish):.2f} ms + bare HTTP POST p50 "
          f"{statistics.median(post):.2f} ms = {base_p50:.2f} ms ({args.baseline_samples} samples each)")
    print(f"  for reference, the bare POST sent as the load's POSTs come, one every "
          f"{1000 / (figures['jobs'] * args.rate):.0f} ms: p50 {statistics.median(figures['paced']):.2f} ms "
          f"({len(figures['paced'])} samples)")
    print(f"load: {figures['jobs']} jobs x {args.rate:g} POSTs/s for {args.seconds:g} s = {figures['sent']} parts; "
          f"{args.viewers // args.jobs * figures['jobs']} viewers; {len(latencies)} deliveries, "
          f"{figures['missing']} missing; machine load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"POST answered (202):    p50 {statistics.median(answered):.1f} ms, p99 {pct(answered, 0.99):.1f} ms")
    print(f"POST -> websocket frame: p50 {p50:.1f} ms, p90 {pct(latencies, 0.9):.1f} ms, p99 {p99:.1f} ms, "
          f"max {max(latencies):.1f} ms")
    print(f"ratio p50 / baseline: {p50 / base_p50:.2f}  (target <= 5);  p99 {p99:.0f} ms (target <= 250)")
    for label, first in (("first part of each job", True), ("the later parts", False)):
        frames = [ms for number, ms in figures["latencies"] if (number == 0) == first]
        answers = [ms for number, ms in figures["answered"] if (number == 0) == first]
        if frames and answers:
            print(f"  {label}: answered p50 {statistics.median(answers):.1f} ms, p99 {pct(answers, 0.99):.1f} ms; "
                  f"frame p50 {statistics.median(frames):.1f} ms, p99 {pct(frames, 0.99):.1f} ms")
    print(f"CPU seconds from the first POST until 3 s after the last ({figures['sent']} log and "
          f"{figures['jobs']} state POSTs): "
          + ", ".join(f"{name} {seconds:.2f}" for name, seconds in figures["cpu"].items()))
    states = figures["states"]
    if states:
        print(f"state POST -> job.state frame (after the Celery hop and commit): "
              f"p50 {statistics.median(states):.1f} ms, p99 {pct(states, 0.99):.1f} ms, {len(states)} deliveries")
    if figures["held"] is not None:
        print(f"idle viewers held by one uvicorn process: {figures['held']} (target >= 1000), server RSS "
              f"{figures['rss']:.0f} MB, {figures['reached']} of them got the next frame")
    if figures["profile"]:
        print(figures["profile"])
    return {"p50": p50, "p99": p99, "ratio": p50 / base_p50, "answer": statistics.median(answered),
            "state": statistics.median(states) if states else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--viewers", type=int, default=300)
    parser.add_argument("--seconds", type=float, default=15, help="how long the jobs stream")
    parser.add_argument("--rate", type=float, default=0.5, help="log POSTs per second per job")
    parser.add_argument("--celery-concurrency", type=int, default=2)
    parser.add_argument("--baseline-samples", type=int, default=500)
    parser.add_argument("--idle-max", type=int, default=1500, help="0 skips the idle-viewer count")
    parser.add_argument("--runs", type=int, default=1, help="whole runs in a row; the spread is printed after")
    parser.add_argument("--profile", action="store_true",
                        help="sample the uvicorn process with py-spy while the jobs stream; print the top frames")
    parser.add_argument("--profile-top", type=int, default=25)
    parser.add_argument("--database-url", default=os.getenv(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/buildboard_bench_tail"))
    args = parser.parse_args()

    # Every viewer is a socket on each side; children inherit the raised limit.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    results = []
    for run in range(1, args.runs + 1):
        if args.runs > 1:
            print(f"--- run {run} of {args.runs}")
        results.append(report(args, run_once(args, run, args.profile)))
        sys.stdout.flush()
    if args.runs > 1:
        print(f"--- spread over {args.runs} runs (min / median / max)")
        for key, label, unit in (("p50", "POST -> frame p50", " ms"), ("p99", "POST -> frame p99", " ms"),
                                 ("ratio", "p50 / baseline", ""), ("answer", "POST answered p50", " ms"),
                                 ("state", "state frame p50", " ms")):
            values = [r[key] for r in results]
            print(f"{label:>20}: {min(values):.2f}{unit} / {statistics.median(values):.2f}{unit} / "
                  f"{max(values):.2f}{unit}")


if __name__ == "__main__":
    main()
