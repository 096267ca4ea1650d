"""Helpers for the browser tests: signing a Playwright context in, axe-core, a site worth looking at."""

import os
from pathlib import Path

from django.conf import settings
from django.test import Client

from incidents import services as incident_services
from incidents.models import Component, ComponentGroup
from jobs import tasks
from jobs.models import create_build

AXE = Path(settings.BASE_DIR) / "tests" / "js" / "node_modules" / "axe-core" / "axe.min.js"
AT = "2026-11-26T10:00:00+00:00"
E = "\x1b"

FAILING_LOG = (
    f"travis_fold:start:install\r{E}[0Ktravis_time:start:01\r{E}[0K$ pip install -r requirements.txt\n"
    "Collecting django\n"
    "Successfully installed django\n"
    f"travis_time:end:01:start=1,finish=2,duration=2000000000\r{E}[0K\n"
    f"travis_fold:end:install\r{E}[0K\n"
    f"travis_fold:start:script\r{E}[0Ktravis_time:start:02\r{E}[0K$ pytest\n"
    + "".join(f"tests/test_app.py::test_{i} PASSED\n" for i in range(30))
    + f"tests/test_app.py::test_login {E}[31mFAILED{E}[0m\n"
    "E   AssertionError: expected 200, got 500 (see https://example.com/ci/help)\n"
    'The command "pytest" exited with 1.\n'
    f"travis_time:end:02:start=2,finish=9,duration=7000000000\r{E}[0K\n"
    f"travis_fold:end:script\r{E}[0K\n"
    "Done. Your build exited with 1.\n"
)


def sign_in(context, base: str, user) -> None:
    """Give a Playwright browser context the session of `user`, without going through the login form."""
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME]
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie.value, "url": base}])


def failed_build(repository: str = "acme/rocket", log: str = FAILING_LOG):
    """A build with a failed job (its log stored) and a passed one."""
    build = create_build(repository=repository, branch="main", commit="4f9c2d1e8b7a6f5e4d3c2b1a0f9e8d7c6b5a4f3e",
                         message="Fix the login page\n\nLonger description.", author="Ada Lovelace",
                         jobs=[{"config": {"python": "3.12", "os": "linux"}}, {"config": {"python": "3.11"}}])
    failing, passing = build.jobs.order_by("id")
    tasks.apply_job_state(failing.pk, 1, "started", AT, worker="worker-1", worker_version="v2.5.0")
    tasks.ingest_log_parts(failing.pk, 1, [{"number": 0, "content": log, "final": True}])
    tasks.apply_job_state(failing.pk, 1, "failed", "2026-11-26T10:03:00+00:00", exit_code=1)
    tasks.apply_job_state(passing.pk, 1, "started", AT, worker="worker-2", worker_version="v2.5.0")
    tasks.ingest_log_parts(passing.pk, 1, [{"number": 0, "content": "all good\nDone. Your build exited with 0.\n",
                                            "final": True}])
    tasks.apply_job_state(passing.pk, 1, "passed", "2026-11-26T10:02:00+00:00", exit_code=0)
    build.refresh_from_db()
    return build


def status_site(user):
    """Components in a group, one degraded, and an incident that is being worked on."""
    group = ComponentGroup.objects.create(name="Builds")
    linux = Component.objects.create(name="Linux builds", group=group, queues="builds.linux")
    Component.objects.create(name="macOS builds", group=group, position=1)
    Component.objects.create(name="API", position=2, description="The worker and status API.")
    incident = incident_services.incident_open(
        name="Slow Linux builds", status="identified", impact="minor", message="Builds **start late**.",
        component_statuses={linux: "degraded_performance"}, notify=False, created_by=user)
    return incident


def axe_violations(page, *, impacts=("serious", "critical")) -> list[dict]:
    """Run axe-core in the page. It is evaluated over the DevTools protocol, which the page's CSP does not
    govern, so the site's policy stays as strict as it is (an added <script> tag would be refused)."""
    if not page.evaluate("typeof axe !== 'undefined'"):
        page.evaluate(AXE.read_text() + "\n;undefined")
    result = page.evaluate("""async () => {
        const r = await axe.run(document, {resultTypes: ['violations']});
        return r.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
            nodes: v.nodes.map(n => ({target: n.target.join(' '), summary: n.failureSummary}))}));
    }""")
    return [v for v in result if v["impact"] in impacts]


def horizontal_overflow(page) -> list[str]:
    """Elements sticking out to the right of the viewport (none means no sideways scrolling)."""
    return page.evaluate("""() => {
        const width = document.documentElement.clientWidth;
        if (document.documentElement.scrollWidth <= width) return [];
        const out = [];
        for (const el of document.querySelectorAll('body *')) {
            const r = el.getBoundingClientRect();
            if (r.right > width + 1 && r.width > 0) {
                out.push(`${el.tagName.toLowerCase()}.${el.className} ${Math.round(r.right)}`);
            }
        }
        return out.slice(0, 15);
    }""")


# Set BB_SCREENSHOTS=/some/dir to keep the pictures the browser tests take, to review the layouts by eye.
SCREENSHOTS = os.environ.get("BB_SCREENSHOTS", "")


def shoot(page, name: str, **kwargs) -> None:
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"), **kwargs)


def relay_websocket(page, pattern):
    """Route the page's websocket through Playwright to the real server. While `dropped` is non-empty,
    server frames are appended to it instead of reaching the page. Returns (sockets, delivered, dropped)."""
    sockets: list = []
    delivered: list = []
    dropped: list = []

    def handler(ws):
        server = ws.connect_to_server()

        def to_page(message):
            if dropped:
                dropped.append(message)
            else:
                delivered.append(message)
                ws.send(message)

        server.on_message(to_page)
        sockets.append(ws)

    page.route_web_socket(pattern, handler)
    return sockets, delivered, dropped
