"""Shared fixtures: named users of different rights, tokens of each kind, real subprocesses.

alice is staff (reads everything, operates nothing by default); bob is signed in but an outsider;
in organization acme, carol may read, dave may operate and erin is admin."""

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from accounts.models import ApiToken, Grant, Membership, Organization
from buildboard import celery_app
from jobs.models import create_build

BASE_DIR = Path(settings.BASE_DIR)


@pytest.fixture(autouse=True)
def eager_celery():
    """Tasks run inline unless a test brings a real worker (see celery_worker)."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False


@pytest.fixture(autouse=True)
def empty_log_buffers():
    """Job ids are reused between tests, so no test may leave buffered log parts behind in Redis."""
    yield
    from jobs import ingest

    r = ingest._redis()
    for key in r.scan_iter(match=f"{settings.CHANNEL_PREFIX}:logbuf*", count=500):
        r.delete(key)


@pytest.fixture
def fast_hashing(settings):
    """Cheap password hashes for tests that create many users or sign in many times."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", "alice-password", is_staff=True)


@pytest.fixture
def bob(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.com", "bob-password")


@pytest.fixture
def acme(db) -> Organization:
    return Organization.objects.get_or_create(name="acme")[0]


def _member(django_user_model, acme, username: str, role: str):
    user = django_user_model.objects.create_user(username, f"{username}@example.com", f"{username}-password")
    Membership.objects.create(organization=acme, user=user)
    Grant.objects.create(organization=acme, user=user, role=role)
    return user


@pytest.fixture
def carol(django_user_model, acme):
    return _member(django_user_model, acme, "carol", "read")


@pytest.fixture
def dave(django_user_model, acme):
    return _member(django_user_model, acme, "dave", "operate")


@pytest.fixture
def erin(django_user_model, acme):
    return _member(django_user_model, acme, "erin", "admin")


@pytest.fixture
def token(db) -> str:
    """An unscoped token, as every token was before kinds existed (what old installations still hold)."""
    return ApiToken.mint(name="test-worker", kind="legacy")[1]


@pytest.fixture
def worker_token(db) -> str:
    """A worker token of the default queue."""
    return ApiToken.mint(name="worker-linux", kind="worker", queues=["builds.linux"])[1]


@pytest.fixture
def build_token(acme) -> str:
    """A build token of the whole acme organization."""
    return ApiToken.mint(name="build-acme", kind="build", organizations=["acme"])[1]


@pytest.fixture
def auth(token) -> dict:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def make_build(db):
    def make(repository="acme/rocket", jobs=1, allow_failure=(), **kwargs):
        specs = [{"allow_failure": i in allow_failure} for i in range(jobs)]
        return create_build(repository=repository, branch=kwargs.pop("branch", "main"),
                            commit=kwargs.pop("commit", "abc123"), jobs=specs, **kwargs)

    return make


@pytest.fixture
def job(make_build):
    return make_build().jobs.get()


def database_url() -> str:
    """The URL of the test database, for server and worker subprocesses."""
    s = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
    return f"postgres://{auth}@{s['HOST'] or 'localhost'}:{s['PORT'] or 5432}/{s['NAME']}"


def subprocess_env(**extra: str) -> dict:
    env = {**os.environ, "DATABASE_URL": database_url(), "PYTHONUNBUFFERED": "1", **extra}
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # only for this process's Playwright loop, see browser()
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop_process(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()


@pytest.fixture
def celery_worker(transactional_db):
    """A real Celery worker process consuming from the test Redis, writing to the test database."""
    celery_app.conf.task_always_eager = False
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "buildboard", "worker", "--pool", "solo", "-l", "warning",
         "--without-heartbeat", "--without-mingle", "--without-gossip"],
        cwd=BASE_DIR, env=subprocess_env(),
    )
    yield process
    stop_process(process)


def start_uvicorn(port: int | None = None, **env: str) -> tuple[subprocess.Popen, str]:
    """The real ASGI app under uvicorn on `port` (a free one by default), once it listens."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "buildboard.asgi:application", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        cwd=BASE_DIR, env=subprocess_env(**env),
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            assert process.poll() is None, "uvicorn exited early"
            time.sleep(0.1)
    return process, f"http://127.0.0.1:{port}"


@pytest.fixture
def asgi_server(transactional_db):
    """The real ASGI app under uvicorn, in its own process; yields its base URL."""
    process, url = start_uvicorn()
    yield url
    stop_process(process)


@pytest.fixture
def second_asgi_server(transactional_db):
    """Another web process on the same database and Redis, as behind a load balancer."""
    process, url = start_uvicorn()
    yield url
    stop_process(process)


def wait_until(predicate, timeout: float = 30.0, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright (playwright's own browser download is unavailable here).

    Module-scoped: Playwright's sync API keeps an event loop running in this thread while it is up,
    which breaks async_to_sync and Django's async-safety check for every later test in the session."""
    from playwright.sync_api import sync_playwright

    # Django mistakes Playwright's loop for async code calling the ORM; tests and fixtures here are
    # plain synchronous code. Only while the browser is up, and never for subprocesses.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM,
                                  args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            yield b
            b.close()
    finally:
        del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]


@pytest.fixture
def page(browser):
    context = browser.new_context()
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.js_errors = errors
    yield pg
    context.close()


@pytest.fixture
def live_system(asgi_server, celery_worker):
    """Web server and Celery worker, both real processes, on the test database and Redis."""
    return asgi_server
