"""bench/viewer: how fast a 100,000-line log opens in the job page, against Chromium painting it as plain text.

A finished job's log of 100,000 lines (with colours, folds and timers, like a Travis log) is stored
through the ingestion task. Headless Chromium then measures, from navigation start:

- baseline: the same text without ANSI codes as one plain <pre> in a static HTML page (served from
  memory by a bare HTTP server, so only Chromium's own work counts), scrolled to the end, painted;
- for reference: the raw log from buildboard's /jobs/N/log.txt?ansi=0, which Chromium shows as text;
- buildboard: the job page opened at #L100000 until line 100,000 is drawn, highlighted and in view
  (the page fetches the log over its websocket, parses colours and folds, and draws visible rows).

Rounds alternate between the two in fresh browser contexts; medians are reported. Usage:

    .venv/bin/python bench/viewer/run.py [--lines 100000] [--rounds 5]
"""

import argparse
import html
import os
import statistics
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx

BASE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BASE_DIR))

from bench.common import prepare_database  # noqa: E402
from buildboard.lib.redis_server import ensure_redis, free_port  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
LINES_PER_PART = 1000
FOLD_EVERY = 2000
E = "\x1b"


def log_parts(total: int) -> list[dict]:
    """`total` visible lines in parts of LINES_PER_PART; a fold with a timer every FOLD_EVERY lines."""
    lines = []
    for n in range(total):
        if n % FOLD_EVERY == 0:
            end = f"travis_time:end:t{n - FOLD_EVERY}:start=0,finish=1,duration=1234567890\r{E}[0K" \
                  f"travis_fold:end:step{n - FOLD_EVERY}\r{E}[0K" if n else ""
            lines.append(f"{end}travis_fold:start:step{n}\r{E}[0Ktravis_time:start:t{n}\r{E}[0K"
                         f"{E}[33;1m$ ./run-step --number {n}{E}[0m")
        elif n % 10 == 0:
            lines.append(f"{E}[32mPASSED{E}[0m tests/test_module_{n // 100}.py::test_case_{n} in 0.01s")
        else:
            lines.append(f"collecting ... tests/test_module_{n // 100}.py::test_case_{n} [{n % 100:2d}%]  ok")
    lines[-1] = f"{E}[1mDone. Your build exited with 0.{E}[0m"
    parts = []
    for number, start in enumerate(range(0, total, LINES_PER_PART)):
        chunk = lines[start:start + LINES_PER_PART]
        parts.append({"number": number, "content": "\n".join(chunk) + "\n"})
    parts[-1]["final"] = True
    return parts


def seed(env: dict, total: int) -> int:
    """Store the log through the ingestion task, in this process, on the benchmark database."""
    os.environ.update({k: env[k] for k in ("DATABASE_URL", "REDIS_URL", "CHANNEL_PREFIX")})
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildboard.settings")
    import django

    django.setup()
    from buildboard import celery_app
    from jobs import tasks
    from jobs.models import create_build

    celery_app.conf.task_always_eager = True
    job = create_build(repository="bench/viewer", branch="main", commit="0" * 40, jobs=[{}]).jobs.get()
    tasks.apply_job_state(job.pk, 1, "started", "2026-01-01T00:00:00+00:00", worker="bench")
    parts = log_parts(total)
    for start in range(0, len(parts), 10):
        tasks.ingest_log_parts(job.pk, 1, parts[start:start + 10])
    tasks.apply_job_state(job.pk, 1, "passed", "2026-01-01T00:10:00+00:00", exit_code=0)
    job.refresh_from_db()
    assert job.log_complete and not job.log_truncated, "the log did not fit the size limit"
    return job.pk


def serve_pre(text: str) -> tuple[ThreadingHTTPServer, str]:
    """A bare HTTP server answering every GET with the text in a <pre>; returns it and its URL."""
    body = ("<!doctype html><meta charset=utf-8><title>plain</title><pre>" + html.escape(text) + "</pre>").encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the http.server API)
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


BASELINE_JS = """async () => {
    window.scrollTo(0, document.body.scrollHeight);
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    return performance.now();
}"""

LAST_LINE_SHOWN_JS = """(row) => {
    const el = document.querySelector(`.ln.hl[data-row="${row}"]`);
    if (!el) return false;
    const box = el.getBoundingClientRect();
    return box.top >= 0 && box.bottom <= innerHeight;
}"""

PAINTED_JS = """async () => {
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    return performance.now();
}"""


def plain_page(browser, url: str, lines: int) -> float:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(url, wait_until="load", timeout=120_000)
    painted = page.evaluate(BASELINE_JS)
    text = page.evaluate("document.body.textContent.trimEnd().split('\\n')")
    # The HTML parser turns each \r into a line break, so travis markers add a few lines here.
    assert len(text) >= lines, f"plain text has {len(text)} lines"
    context.close()
    return painted


def measure(browser, pre_url: str, base: str, job_id: int, lines: int) -> tuple[float, float, float]:
    baseline = plain_page(browser, pre_url, lines)
    raw = plain_page(browser, f"{base}/jobs/{job_id}/log.txt?ansi=0", lines)

    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(f"{base}/jobs/{job_id}/#L{lines}", wait_until="commit")
    page.wait_for_function(LAST_LINE_SHOWN_JS, arg=lines - 1, polling="raf", timeout=120_000)
    viewer = page.evaluate(PAINTED_JS)
    assert not errors, errors
    assert page.evaluate("window.buildboardLog.model.text.length") == lines
    context.close()
    return baseline, raw, viewer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", default=os.getenv(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/buildboard_bench_viewer"))
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    redis = ensure_redis()
    env = {**os.environ, "REDIS_URL": redis.url, "DATABASE_URL": args.database_url, "DEBUG": "False",
           "SECRET_KEY": "bench", "SECURE_SSL_REDIRECT": "False", "ALLOWED_HOSTS": "127.0.0.1,localhost",
           "CHANNEL_PREFIX": "benchviewer", "PYTHONPATH": str(BASE_DIR)}
    server = None
    try:
        prepare_database(args.database_url)
        subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=BASE_DIR, env=env,
                       check=True)
        subprocess.run([sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=BASE_DIR, env=env,
                       check=True)
        seeded = time.perf_counter()
        job_id = seed(env, args.lines)
        seeded = time.perf_counter() - seeded
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "buildboard.asgi:application", "--port",
                                   str(port), "--log-level", "warning", "--no-access-log"], cwd=BASE_DIR, env=env)
        base = f"http://127.0.0.1:{port}"
        _wait_listening(base)
        plain_text = httpx.get(f"{base}/jobs/{job_id}/log.txt?ansi=0", timeout=60).text
        pre_server, pre_url = serve_pre(plain_text)
        baselines, raws, viewers = [], [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            measure(browser, pre_url, base, job_id, args.lines)  # warm-up: server caches, Chromium's code paths
            for _ in range(args.rounds):
                baseline, raw, viewer = measure(browser, pre_url, base, job_id, args.lines)
                baselines.append(baseline)
                raws.append(raw)
                viewers.append(viewer)
            browser.close()
        pre_server.shutdown()
    finally:
        if server:
            server.terminate()
            server.wait(10)
        redis.stop()

    base_ms, viewer_ms = statistics.median(baselines), statistics.median(viewers)
    raw_ms = statistics.median(raws)
    print(f"log: {args.lines:,} lines seeded through the ingestion task in {seeded:.1f} s; "
          f"medians of {args.rounds} alternating rounds in fresh browser contexts")
    print(f"baseline  plain <pre> of the same text, scrolled to the end, painted: {base_ms:8.0f} ms  "
          f"{_all(baselines)}")
    print(f"reference raw log.txt?ansi=0 as text/plain, scrolled to the end, painted:{raw_ms:8.0f} ms  "
          f"{_all(raws)}")
    print(f"buildboard job page at #L{args.lines}, line drawn, highlighted, in view: {viewer_ms:8.0f} ms  "
          f"{_all(viewers)}")
    print(f"ratio (buildboard / baseline): {viewer_ms / base_ms:.2f}  (target <= 1.5)")


def _all(values: list[float]) -> str:
    return "(rounds: " + ", ".join(f"{v:.0f}" for v in values) + ")"


def _wait_listening(url: str) -> None:
    for _ in range(300):
        try:
            httpx.get(url + "/api/v1/openapi.json")
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


if __name__ == "__main__":
    main()
