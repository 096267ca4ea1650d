"""The `./bb run` and `./bb test` commands: start what is needed, run, and stop it all on exit."""

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from .redis_server import ensure_redis

BASE_DIR = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def _manage(*args: str, env: dict, capture: bool = False) -> str:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=BASE_DIR, env=env, check=True,
                            capture_output=capture, text=True)
    return result.stdout.strip() if capture else ""


class _Output:
    """The children's output, forwarded line by line, so that ours can wait for a quiet moment."""

    QUIET_SECONDS = 1.5
    STARTUP_TIMEOUT = 60

    def __init__(self):
        self.lock = threading.Lock()
        self.last = time.monotonic()
        self.spoke: set[int] = set()  # pids of the children that have printed something

    def forward(self, child: subprocess.Popen) -> None:
        def pump() -> None:
            for line in child.stdout:
                with self.lock:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                    self.last = time.monotonic()
                    self.spoke.add(child.pid)

        threading.Thread(target=pump, daemon=True).start()

    def say(self, text: str) -> None:
        with self.lock:
            sys.stdout.write(text)
            sys.stdout.flush()

    def wait_until_up(self, host: str, port: int, children: list[subprocess.Popen],
                      banners: list[subprocess.Popen]) -> None:
        """Until the web server accepts connections, each of `banners` (Celery's worker and beat print
        one as they start) has printed, and all have been quiet for a moment."""
        deadline = time.monotonic() + self.STARTUP_TIMEOUT
        while time.monotonic() < deadline and all(c.poll() is None for c in children) and \
                not {b.pid for b in banners} <= self.spoke:
            time.sleep(0.1)
        address = ("127.0.0.1" if host in ("0.0.0.0", "") else host.strip("[]"), port)
        while time.monotonic() < deadline and all(c.poll() is None for c in children):
            try:
                socket.create_connection(address, timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        while time.monotonic() < deadline and time.monotonic() - self.last < self.QUIET_SECONDS:
            time.sleep(0.1)


DATA_DIR = BASE_DIR / ".data"


def run(args: argparse.Namespace) -> int:
    # The private Redis keeps its AOF here between runs: parts accepted before a stop are stored after it.
    redis = ensure_redis(DATA_DIR / "redis")
    env = {**os.environ, "REDIS_URL": redis.url, "PYTHONUNBUFFERED": "1"}
    url = f"http://{args.host}:{args.port}"
    env.setdefault("SITE_ROOT", url)
    children: list[subprocess.Popen] = []
    try:
        _manage("migrate", "--noinput", "-v0", env=env)
        password = os.getenv("BUILDBOARD_ADMIN_PASSWORD") or secrets.token_urlsafe(12)
        _manage("ensure_staff", "admin", password, env=env)
        if not args.no_demo:
            _manage("seed_status_components", env=env)
        demo = json.loads(_manage("demo_accounts", env=env, capture=True)) if not args.no_demo else None
        commands = [
            ["-m", "uvicorn", "buildboard.asgi:application", "--host", args.host, "--port", str(args.port),
             "--log-level", "warning", "--no-access-log"],
            ["-m", "celery", "-A", "buildboard", "worker", "-l", "warning", "--concurrency", str(args.concurrency)],
            ["-m", "celery", "-A", "buildboard", "beat", "-l", "warning",
             "--schedule", str(BASE_DIR / ".celerybeat-schedule")],
        ]
        if not args.no_demo:
            commands.append(["manage.py", "simulate", "--url", url, "--token", demo["worker_token"],
                             "--build-token", demo["build_token"], "--operator-token", demo["operator_token"],
                             "--rate", str(args.rate)])
        output = _Output()
        for command in commands:
            child = subprocess.Popen([PYTHON, *command], cwd=BASE_DIR, env=env, start_new_session=True,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
            children.append(child)
            output.forward(child)
        # The URL and the logins come last, after the servers' banners, so they do not scroll away.
        output.wait_until_up(args.host, args.port, children, banners=children[1:3])
        lines = [f"\nbuildboard is running at {url}/  (status page: {url}/status/)",
                 f"Staff login: admin / {password}"]
        if demo:
            lines.append(f"Developer login (not staff; operates {demo['organization']} through team {demo['team']}, "
                         f"which has the private {demo['private_repository']}): {demo['developer']} / "
                         f"{demo['password']}")
        lines.append("Press Ctrl-C to stop everything.\n")
        output.say("\n".join(lines) + "\n")
        while all(c.poll() is None for c in children):
            time.sleep(0.5)
        failed = next(c for c in children if c.poll() is not None)
        print(f"{' '.join(failed.args[1:4])} exited with code {failed.returncode}; stopping.", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nStopping ...")
        return 0
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
        redis.stop()


def _ensure_test_node_packages() -> None:
    """Tests that need npm packages keep a lockfile in their folder (tests/oidc: the sign-in tests' OpenID
    Connect provider; tests/js: axe-core for the accessibility audit). They are installed on a fresh clone
    and again whenever a lockfile changes, as ./bb does for requirements.txt. Without npm the tests
    themselves say what is missing."""
    if shutil.which("npm") is None:
        return
    for lock in sorted(BASE_DIR.glob("tests/*/package-lock.json")):
        want = hashlib.sha256(lock.read_bytes()).hexdigest()
        stamp = lock.parent / "node_modules" / ".bb-lock.sha"
        if stamp.is_file() and stamp.read_text().strip() == want:
            continue
        print(f"Installing {lock.parent.relative_to(BASE_DIR)}'s npm packages ...", file=sys.stderr)
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=lock.parent, check=True)
        stamp.write_text(want)


def test(args: argparse.Namespace, extra: list[str]) -> int:
    _ensure_test_node_packages()
    redis = ensure_redis()
    env = {**os.environ, "REDIS_URL": redis.url, "CHANNEL_PREFIX": f"bbtest{os.getpid()}"}
    try:
        return subprocess.call([PYTHON, "-m", "pytest", *extra], cwd=BASE_DIR, env=env)
    except KeyboardInterrupt:
        return 130
    finally:
        redis.stop()


def _interrupt_on_sigterm() -> None:
    """`kill` (or a supervisor) stops everything we started, just like Ctrl-C does."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main() -> int:
    _interrupt_on_sigterm()
    parser = argparse.ArgumentParser(prog="bb", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="start web, Celery worker and beat, and a demo fleet")
    run_parser.add_argument("--host", default=os.getenv("HOST", "127.0.0.1"))
    run_parser.add_argument("--port", type=int, default=int(os.getenv("PORT", "8000")))
    run_parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    run_parser.add_argument("--rate", type=float, default=6.0, help="demo builds per minute")
    run_parser.add_argument("--no-demo", action="store_true", help="do not start the demo fleet")
    sub.add_parser("test", help="run the test suite; extra arguments go to pytest")
    args, extra = parser.parse_known_args()
    if args.command == "run":
        return run(args)
    return test(args, extra)


if __name__ == "__main__":
    sys.exit(main())
