"""Shared fixtures: named users of different rights, tokens of each kind, real subprocesses.

alice is staff (reads everything, operates nothing by default); bob is signed in but an outsider;
in organization acme, carol may read, dave may operate and erin is admin.

Every test starts from the same world whatever ran before it (the suite runs in random order): an empty
database, an empty Redis namespace, no process-level caches, and no browser unless it asks for one.
With BB_TEST_NOW set, every test also starts at that instant (see travelled_clock)."""

import os
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import time_machine
from django.conf import settings
from django.db import connection
from django.test import Client

from accounts.models import ApiToken, Grant, Membership, Organization
from buildboard import celery_app
from jobs.models import create_build

BASE_DIR = Path(settings.BASE_DIR)


def _test_now() -> datetime | None:
    value = os.getenv("BB_TEST_NOW", "").strip()
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        raise pytest.UsageError(f"BB_TEST_NOW={value!r} is not an ISO 8601 time, e.g. 2026-12-31T23:59:30Z") from None
    if when.tzinfo is None:
        raise pytest.UsageError(f"BB_TEST_NOW={value!r} needs a time zone, e.g. 2026-12-31T23:59:30Z")
    return when


TEST_NOW: datetime | None = None


def pytest_configure(config) -> None:
    global TEST_NOW
    TEST_NOW = _test_now()


def pytest_report_header(config) -> str:
    if TEST_NOW is None:
        return "clock: real (set BB_TEST_NOW=2026-12-31T23:59:30Z to start every test at a chosen instant)"
    return f"clock: every test starts at BB_TEST_NOW={TEST_NOW.isoformat()} and ticks on (real_clock tests excepted)"


def pytest_terminal_summary(terminalreporter, config) -> None:
    # Also under -q, which hides the report header: the seed is what a failure needs to be replayed.
    seed = config.getoption("randomly_seed", None)
    if isinstance(seed, int):
        terminalreporter.write_line(f"random order: replay with --randomly-seed={seed}; "
                                    "-p no:randomly runs the tests in file order")
    if TEST_NOW is not None:
        terminalreporter.write_line(f"clock: every test started at BB_TEST_NOW={TEST_NOW.isoformat()}")


def pytest_collection_modifyitems(items) -> None:
    for item in items:
        marker = item.get_closest_marker("real_clock")
        if marker and not (marker.args or marker.kwargs.get("reason")):
            raise pytest.UsageError(f"{item.nodeid}: real_clock needs a reason, e.g. real_clock(\"...\")")


@pytest.fixture(autouse=True)
def travelled_clock(request):
    """Under BB_TEST_NOW, the test runs from that instant on a ticking clock (time-machine moves
    time.time() and datetime.now(), not time.monotonic(), so timeouts stay real). The uvicorn and Celery
    processes a test starts share its clock (see subprocess_env); Redis expiries are relative and
    unaffected. Chromium's clock stays real: pages show times the server rendered, and the page scripts
    only turn them into relative words and running durations, which no browser test asserts."""
    if TEST_NOW is None or request.node.get_closest_marker("real_clock"):
        yield
        return
    # A timestamp, not the datetime: time-machine would otherwise also set TZ to the instant's zone.
    with time_machine.travel(TEST_NOW.timestamp(), tick=True):
        yield


@pytest.fixture(autouse=True)
def fresh_process_state():
    """Process-level state that a rolled-back database does not roll back: the verified-token cache (it
    holds token rows and their users, whose ids are reused after a rollback on SQLite), the jobs' facts
    (queue and repository by job id, as reused) and the channel layer, whose Redis connections and receive
    state belong to the event loop of the test that made them."""
    from channels.layers import channel_layers

    from accounts import tokens
    from jobs import card

    def forget() -> None:
        tokens._cache.clear()
        card._facts.clear()
        channel_layers.backends.clear()

    forget()
    yield
    forget()


@pytest.fixture(autouse=True)
def eager_celery():
    """Tasks run inline unless a test brings a real worker (see celery_worker)."""
    celery_app.conf.task_always_eager = True
    celery_app.conf.task_eager_propagates = True
    yield
    celery_app.conf.task_always_eager = False


def _empty_redis_namespace() -> None:
    # Everything the project keeps in Redis lives under CHANNEL_PREFIX (`./bb test` gives each run its
    # own): log buffers, the page caches, channel layer groups, Celery's queues and unacked tasks. Celery's
    # exchange bindings stay, because a process that declared them once does not declare them again.
    from jobs import ingest

    r = ingest._redis()
    keys = [key for key in r.scan_iter(match=f"{settings.CHANNEL_PREFIX}:*", count=1000)
            if b":_kombu.binding." not in key]
    for start in range(0, len(keys), 500):
        r.delete(*keys[start:start + 500])


@pytest.fixture(autouse=True)
def empty_redis():
    """Database ids and the status page's sequence restart after every rollback, so anything a test
    left in Redis (buffered log parts, a cached page for "sequence 3", a queued task for "job 5") would
    be taken for the next test's data."""
    _empty_redis_namespace()
    yield
    _empty_redis_namespace()


@pytest.fixture
def fast_hashing(settings):
    """Cheap password hashes for tests that create many users or sign in many times."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def alice(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", "alice-password", is_staff=True)


@pytest.fixture
def staff(alice):
    """A browser signed in as alice, who is staff."""
    client = Client()
    client.force_login(alice)
    return client


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
    env.pop("BB_TEST_CLOCK_OFFSET", None)
    if time_machine.escape_hatch.is_travelling():
        # A process started through python_module() moves its clock by the same amount (tests/travel.py).
        env["BB_TEST_CLOCK_OFFSET"] = repr(time.time() - time_machine.escape_hatch.time.time())
    return env


def python_module(module: str, *args: str) -> list[str]:
    """The command line of `python -m module args`, on this test's clock."""
    return [sys.executable, "-m", "tests.travel", module, *args]


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
        python_module("celery", "-A", "buildboard", "worker", "--pool", "solo", "-l", "warning",
                      "--without-heartbeat", "--without-mingle", "--without-gossip"),
        cwd=BASE_DIR, env=subprocess_env(),
    )
    yield process
    stop_process(process)


def start_uvicorn(port: int | None = None, **env: str) -> tuple[subprocess.Popen, str]:
    """The real ASGI app under uvicorn on `port` (a free one by default), once it listens."""
    port = port or free_port()
    process = subprocess.Popen(
        python_module("uvicorn", "buildboard.asgi:application", "--host", "127.0.0.1", "--port", str(port),
                      "--log-level", "warning"),
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


class Chromium:
    """Debian's Chromium driven by Playwright (playwright's own browser download is unavailable here).

    Playwright's sync API keeps an event loop running in this thread while it is up, which breaks
    async_to_sync and Django's async-safety check for any other test. So the browser stays up only
    across consecutive tests that use it (launching it costs 1-2 s) and is stopped before any test that
    does not, in whatever order the tests run (pytest_runtest_teardown below)."""

    def __init__(self) -> None:
        self._playwright = None
        self._browser = None

    def get(self):
        if self._browser is None:
            from playwright.sync_api import sync_playwright

            # Django mistakes Playwright's loop for async code calling the ORM; tests and fixtures here are
            # plain synchronous code. Only while the browser is up, and never for subprocesses.
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
            self._playwright = sync_playwright().start()
            self._browser = self._playwright.chromium.launch(
                executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
        return self._browser

    def stop(self) -> None:
        if self._playwright is None:
            return
        playwright, browser = self._playwright, self._browser
        self._playwright = self._browser = None
        try:
            browser.close()
        finally:
            playwright.stop()
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


chromium = Chromium()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield  # the test's own fixtures (its pages and contexts) are closed by now
    if nextitem is None or "browser" not in getattr(nextitem, "fixturenames", ()):
        chromium.stop()


def pytest_unconfigure(config) -> None:
    chromium.stop()  # an interrupted run


@pytest.fixture
def browser():
    return chromium.get()


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
