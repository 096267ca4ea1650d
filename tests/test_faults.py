"""Fault injection: no accepted log part is lost, doubled or stalled when any one process dies.

The suite owns everything it breaks: a throwaway PostgreSQL cluster (initdb, a free port), a Redis with
the AOF the project requires, uvicorn, a Celery worker (prefork) and beat. Resending clients
(devtools/worker_client.py, the demo fleet's) stream numbered parts for twelve jobs while, in turn, the
Celery worker is killed with SIGKILL, Redis is killed with SIGKILL, PostgreSQL is stopped as by a crash,
and uvicorn is killed with SIGKILL; each comes back a few seconds later. After each, every part must
be stored exactly once and in order within 30 s of the component's return. Run with -s for the figures.
Archiving is on throughout, with a short grace: each job reports `passed` once its log is stored, beat
moves the log to the log storage (a directory here), and every check reads the log back through the API,
archived or not. Also here, against the real processes: 503s in under 2 s while Redis or PostgreSQL is out, the status
page answering without Redis, NUL and lone surrogates, and the dead-letter path."""

import json
import re
import threading
import time
from dataclasses import dataclass

import httpx
import psycopg
import pytest
import redis

from devtools.worker_client import ApiClient, LogStream

from .processes import PostgresCluster, RedisServer, Service, port_open, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

JOBS = 12
PARTS = 40
PART_INTERVAL = 0.12  # seconds between a job's parts: ~100 requests/s over the twelve jobs
FAULT_AFTER = 2.0  # seconds into the stream
DOWN_FOR = 3.0
RECOVERY_LIMIT = 30.0
PREFIX = "bbfault"
FIGURES: list[dict] = []


@dataclass
class System:
    pg: PostgresCluster
    redis: RedisServer
    web: Service
    worker: Service
    beat: Service
    url: str
    token: str  # a worker token of builds.linux: states, log parts, heartbeats
    build_token: str  # the faults organization's: creates builds

    def sql(self, query: str, *args) -> list[tuple]:
        with psycopg.connect(self.pg.url.replace("postgres://", "postgresql://"), connect_timeout=3) as conn:
            return conn.execute(query, args).fetchall()


@pytest.fixture(scope="module")
def system(tmp_path_factory):
    logs = tmp_path_factory.mktemp("fault-logs")
    pg, store = PostgresCluster(), RedisServer()
    started: list = []
    try:
        pg.start()
        pg.createdb()
        store.start()
        env = {k: v for k, v in __import__("os").environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
        env.update(DATABASE_URL=pg.url, REDIS_URL=store.url, CHANNEL_PREFIX=PREFIX, PYTHONUNBUFFERED="1",
                   REDIS_PERSISTENCE="require", DEBUG="True", LOG_LEVEL="WARNING", ALERTS_EVALUATE_SECONDS="3",
                   CELERY_BEAT_SCHEDULE_FILENAME=str(logs / "celerybeat-schedule"),
                   LOG_STORAGE_URL="", LOG_STORAGE_DIR=str(logs / "archive"), LOG_ARCHIVE="True",
                   LOG_ARCHIVE_GRACE="2", LOG_ARCHIVE_SCAN_SECONDS="1")
        import subprocess
        import sys

        from .processes import BASE_DIR

        def manage(*args: str) -> str:
            return subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True,
                                  capture_output=True, text=True).stdout.strip()

        manage("migrate", "--noinput", "-v0")
        manage("createorg", "faults")
        build_token = manage("create_token", "faults-ci", "--organization", "faults")
        manage("ensure_staff", "sam", "sam-password-123")
        from buildboard.lib.redis_server import free_port

        port = free_port()
        web = Service("uvicorn", ["-m", "uvicorn", "buildboard.asgi:application", "--host", "127.0.0.1", "--port",
                                  str(port), "--log-level", "warning", "--no-access-log"], env, logs,
                      ready=lambda: port_open(port))
        worker = Service("celery-worker", ["-m", "celery", "-A", "buildboard", "worker", "--concurrency", "2",
                                           "-l", "warning", "--without-gossip", "--without-mingle"], env, logs)
        beat = Service("celery-beat", ["-m", "celery", "-A", "buildboard", "beat", "-l", "warning",
                                       "--schedule", str(logs / "celerybeat-schedule")], env, logs)
        for service in (web, worker, beat):
            service.start()
            started.append(service)
        url = f"http://127.0.0.1:{port}"
        # Builds come with the organization's build token; the workers report with a worker token of the
        # queue, which can be minted once a job names it.
        ApiClient(url, build_token).post("/api/v1/builds", {"repository": "faults/warmup", "branch": "main",
                                                             "commit": "0", "jobs": [{}]})
        token = manage("create_token", "faults-workers", "--queue", "builds.linux")
        yield System(pg, store, web, worker, beat, url, token, build_token)
    except BaseException:
        for service in started:
            print(f"--- {service.name} ---\n{service.tail()}")
        raise
    finally:
        for service in reversed(started):
            service.stop()
        store.destroy()
        pg.destroy()
        if FIGURES:
            print("\n| fault | jobs | parts accepted | stored | duplicated | client resends | recovery |")
            print("|---|---|---|---|---|---|---|")
            for f in FIGURES:
                print(f"| {f['fault']} | {f['jobs']} | {f['accepted']} | {f['stored']} | {f['duplicated']} | "
                      f"{f['resends']} | {f['recovery']:.1f} s |")


def create_jobs(system: System, count: int = JOBS) -> list[int]:
    api = ApiClient(system.url, system.build_token, httpx.Client(timeout=10))
    build = api.post("/api/v1/builds", {"repository": "faults/stream", "branch": "main", "commit": "f00d",
                                        "jobs": [{"config": {"n": i}} for i in range(count)]})
    return [j["id"] for j in build["jobs"]]


def content(job_id: int, number: int) -> str:
    return f"job {job_id} part {number}\n"


def stream(system: System, job_ids: list[int], streams: dict) -> list[threading.Thread]:
    def run(job_id: int) -> None:
        api = ApiClient(system.url, system.token, httpx.Client(timeout=5))
        log = streams[job_id] = LogStream(api, job_id, resend_after=3.0)
        for n in range(PARTS):
            log.send(content(job_id, n), final=n == PARTS - 1)
            time.sleep(PART_INTERVAL)
        log.finish(timeout=90)
        api.post(f"/api/v1/jobs/{job_id}/state", {"state": "passed", "exit_code": 0})  # now it may be archived

    threads = [threading.Thread(target=run, args=(j,), daemon=True) for j in job_ids]
    for t in threads:
        t.start()
    return threads


def stored_everything(system: System, job_ids: list[int]) -> bool:
    rows = system.sql("SELECT count(*) FROM jobs_job WHERE id = ANY(%s) AND log_persisted_through = %s",
                      job_ids, PARTS - 1)
    return rows[0][0] == len(job_ids)


def archived(system: System, job_ids: list[int]) -> bool:
    rows = system.sql("SELECT count(*) FROM jobs_logarchive WHERE job_id = ANY(%s)", job_ids)
    live = system.sql("SELECT count(*) FROM jobs_logpart WHERE job_id = ANY(%s)", job_ids)
    return rows[0][0] == len(job_ids) and live[0][0] == 0


def run_fault(system: System, name: str, inject, recover) -> dict:
    """Stream, inject the fault, recover, and measure until every part of every job is stored."""
    job_ids = create_jobs(system)
    streams: dict[int, LogStream] = {}
    threads = stream(system, job_ids, streams)
    time.sleep(FAULT_AFTER)
    inject()
    time.sleep(DOWN_FOR)
    recover()
    recovered = time.monotonic()
    try:
        wait_for(lambda: stored_everything(system, job_ids), RECOVERY_LIMIT + 30, f"{name}: every part stored",
                 interval=0.1)
    finally:
        for t in threads:
            t.join(60)
    recovery = time.monotonic() - recovered
    # Then the finished logs leave the database for the archive, and read back the same.
    wait_for(lambda: archived(system, job_ids), 60, f"{name}: every log archived", interval=0.2)
    rows = []
    by_job: dict[int, list[tuple[int, str]]] = {}
    for job_id in job_ids:
        log = httpx.get(f"{system.url}/api/v1/jobs/{job_id}/log").json()
        by_job[job_id] = [(p["number"], p["content"]) for p in log["parts"]]
        rows += by_job[job_id]
        assert by_job[job_id] == [(n, content(job_id, n)) for n in range(PARTS)], f"{name}: job {job_id} log is wrong"
        assert log["complete"] is True
        assert httpx.get(f"{system.url}/api/v1/jobs/{job_id}").json()["log"]["archived"] is True
    figures = {
        "fault": name, "jobs": len(job_ids),
        "accepted": sum(len(s.accepted) for s in streams.values()),
        "stored": len(rows),
        "duplicated": len(rows) - len({(j, n) for j, parts in by_job.items() for n, _ in parts}),
        "resends": sum(s.resent + s.api.retries for s in streams.values()),
        "recovery": recovery,
    }
    FIGURES.append(figures)
    print(f"\n{name}: {figures}")
    assert figures["accepted"] == len(job_ids) * PARTS
    assert figures["stored"] == figures["accepted"] and figures["duplicated"] == 0
    assert recovery <= RECOVERY_LIMIT, f"{name}: stored {recovery:.1f} s after recovery"
    return figures


def timed(method, url: str, **kwargs) -> tuple[httpx.Response, float]:
    start = time.monotonic()
    response = method(url, timeout=10, **kwargs)
    return response, time.monotonic() - start


def test_kill_9_of_the_celery_worker_loses_and_stalls_nothing(system):
    run_fault(system, "kill -9 Celery worker", system.worker.kill, system.worker.start)


def test_kill_9_of_redis_loses_and_stalls_nothing_and_answers_503_meanwhile(system):
    job_id = create_jobs(system, 1)[0]
    auth = {"Authorization": f"Bearer {system.token}"}
    answers = {}

    def inject():
        system.redis.kill()
        # While Redis is out: the worker endpoints answer 503 at once, saying what is stored...
        answers["log"] = timed(httpx.post, f"{system.url}/api/v1/jobs/{job_id}/log", headers=auth,
                               json={"parts": [{"number": 0, "content": "x"}]})
        answers["state"] = timed(httpx.post, f"{system.url}/api/v1/jobs/{job_id}/state", headers=auth,
                                 json={"state": "started"})
        # ...and the public status page and its JSON answer from the database.
        answers["status"] = timed(httpx.get, f"{system.url}/status/")
        answers["summary"] = timed(httpx.get, f"{system.url}/api/v2/summary.json")

    run_fault(system, "kill -9 Redis (AOF everysec)", inject, system.redis.start)
    for name in ("log", "state"):
        response, seconds = answers[name]
        assert response.status_code == 503 and response.headers["Retry-After"], (name, response.text)
        assert response.headers["Content-Type"] == "application/json" and seconds < 2, (name, seconds)
    assert answers["log"][0].json()["persisted_through"] == -1
    for name in ("status", "summary"):
        assert answers[name][0].status_code == 200, name


def test_a_postgresql_restart_loses_and_stalls_nothing_and_answers_503_meanwhile(system):
    job_id = create_jobs(system, 1)[0]
    auth = {"Authorization": f"Bearer {system.token}"}
    answers = []

    def inject():
        system.pg.stop("immediate")
        time.sleep(0.5)
        for _ in range(3):  # stale pooled connections first, then no connection at all
            answers.append(timed(httpx.post, f"{system.url}/api/v1/jobs/{job_id}/state", headers=auth,
                                 json={"state": "started"}))

    run_fault(system, "PostgreSQL crash and restart", inject, system.pg.start)
    for response, seconds in answers:
        assert response.status_code == 503 and response.headers["Retry-After"], response.text
        assert response.json()["error"] and seconds < 2, seconds
    response, _ = timed(httpx.post, f"{system.url}/api/v1/jobs/{job_id}/state", headers=auth,
                        json={"state": "started"})
    assert response.status_code == 202  # no stale connection is left to fail a request


def test_kill_9_of_uvicorn_loses_and_stalls_nothing(system):
    run_fault(system, "kill -9 uvicorn", system.web.kill, system.web.start)


def test_nul_and_lone_surrogates_over_the_wire(system):
    job_id = create_jobs(system, 1)[0]
    auth = {"Authorization": f"Bearer {system.token}", "Content-Type": "application/json"}
    url = f"{system.url}/api/v1/jobs/{job_id}"
    nul_log = httpx.post(f"{url}/log", headers=auth, content=b'{"parts": [{"number": 0, "content": "a\\u0000b"}]}')
    assert nul_log.status_code == 202
    surrogate = httpx.post(f"{url}/log", headers=auth, content=b'{"parts": [{"number": 1, "content": "a\\udc00"}]}')
    assert surrogate.status_code == 400 and "parts[0].content" in surrogate.json()["error"]
    worker = httpx.post(f"{url}/state", headers=auth, content=b'{"state": "started", "worker": "w\\u0000"}')
    assert worker.status_code == 400 and "'worker'" in worker.json()["error"]
    build_auth = {"Authorization": f"Bearer {system.build_token}", "Content-Type": "application/json"}
    branch = httpx.post(f"{system.url}/api/v1/builds", headers=build_auth, content=json.dumps(
        {"repository": "faults/nul", "branch": "main\udc00", "commit": "c", "jobs": [{}]}).encode())
    assert branch.status_code == 400 and "'branch'" in branch.json()["error"]
    heartbeat = httpx.post(f"{system.url}/api/v1/workers/w1/heartbeat", headers=auth, content=json.dumps(
        {"version": "v1", "queue": "builds.linux", "pool_size": 1, "busy": 0, "state": "in_service",
         "errors": [{"at": "2017-02-04T10:00:00Z", "message": "boom\x00"}]}).encode())
    assert heartbeat.status_code == 400 and "'errors[0].message'" in heartbeat.json()["error"]
    wait_for(lambda: system.sql("SELECT log_persisted_through FROM jobs_job WHERE id = %s", job_id)[0][0] == 0, 30,
             "the NUL part stored")
    assert system.sql("SELECT content FROM jobs_logpart WHERE job_id = %s", job_id) == [("a\ufffdb",)]


def test_a_poison_item_goes_to_the_dead_letters_and_later_parts_are_stored(system):
    job_id = create_jobs(system, 1)[0]
    api = ApiClient(system.url, system.token, httpx.Client(timeout=10))
    api.post(f"/api/v1/jobs/{job_id}/log", {"parts": [{"number": 0, "content": "before\n"}]})
    wait_for(lambda: system.sql("SELECT log_persisted_through FROM jobs_job WHERE id = %s", job_id)[0][0] == 0, 30,
             "part 0 stored")
    # An item no validation would pass (say, left by an older release): PostgreSQL refuses its NUL.
    r = redis.Redis.from_url(system.redis.url)
    r.rpush(f"{PREFIX}:logbuf:{job_id}", b'1\n{"parts": [{"number": 1, "content": "poison\\u0000"}]}')
    api.post(f"/api/v1/jobs/{job_id}/log", {"parts": [{"number": 2, "content": "after\n", "final": True}]})
    wait_for(lambda: system.sql("SELECT log_persisted_through FROM jobs_job WHERE id = %s", job_id)[0][0] == 2, 30,
             "the parts after the poison stored")
    [(number, error)] = system.sql("SELECT number, error FROM jobs_deadletter WHERE job_id = %s", job_id)
    assert number == 1 and "NUL" in error
    log = httpx.get(f"{system.url}/jobs/{job_id}/log.txt").text
    assert log.startswith("before\n") and "Part 1 of this log could not be stored" in log and log.endswith("after\n")
    # Staff see it on the fleet page, with a count, and beat's alert evaluation raises an alert.
    wait_for(lambda: system.sql("SELECT count(*) FROM jobs_alert WHERE rule = 'log_dead_letters' AND state = "
                                "'firing'")[0][0] == 1, 30, "the dead-letter alert firing")
    with httpx.Client(base_url=system.url, timeout=10) as browser:
        login = browser.get("/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
        browser.post("/login/", data={"username": "sam", "password": "sam-password-123",
                                      "csrfmiddlewaretoken": csrf}, headers={"Referer": f"{system.url}/login/"})
        fleet = browser.get("/fleet/").text
    assert 'data-role="dead-letter-count">1<' in fleet and f"job {job_id}" in fleet
    assert "log part(s) of jobs on builds.linux could not be stored" in fleet
