"""Real server processes that a test owns and may kill: a throwaway PostgreSQL cluster, a Redis with
the AOF persistence the project requires, and the project's own web, Celery worker and beat.

Never the machine's shared PostgreSQL or Redis: everything here listens on free ports of its own."""

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from buildboard.lib.redis_server import free_port, redis_command

BASE_DIR = Path(__file__).resolve().parent.parent


def wait_for(predicate, timeout: float, what: str, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception:
            value = None
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"{what}: not within {timeout} s")


def port_open(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def _postgres_bin() -> Path:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    assert initdb, "PostgreSQL's server binaries (initdb, postgres) are needed: apt-get install postgresql"
    return Path(initdb).parent


class PostgresCluster:
    """`initdb` into a temporary directory and `postgres` on a free port, TCP only, trust auth.

    PostgreSQL refuses to run as root; when the tests are root (as CI is), the cluster belongs to the
    `postgres` OS user and its commands run through runuser."""

    def __init__(self):
        self.bin = _postgres_bin()
        self.port = free_port()
        self.base = Path(tempfile.mkdtemp(prefix="bb-faults-pg-"))
        self.data = self.base / "data"
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            import pwd

            user = pwd.getpwnam("postgres")
            os.chown(self.base, user.pw_uid, user.pw_gid)
            self.as_user = ["runuser", "-u", "postgres", "--"]
        self.log = open(self.base / "postgres.log", "ab")  # noqa: SIM115 (closed in destroy)
        subprocess.run([*self.as_user, str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust",
                        "--no-sync", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL, stderr=self.log)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/buildboard"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [*self.as_user, str(self.bin / "postgres"), "-D", str(self.data), "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=", "-c", "max_connections=200",
             "-c", "fsync=off"],  # a process crash is what is tested here, not a power cut
            stdout=self.log, stderr=self.log, start_new_session=True)
        wait_for(self.ready, 60, "PostgreSQL accepting connections")

    def ready(self) -> bool:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", connect_timeout=1):
            return True

    def _postmaster_pid(self) -> int:
        return int((self.data / "postmaster.pid").read_text().split("\n", 1)[0])

    def stop(self, mode: str = "immediate") -> None:
        """immediate: like a crash (SIGQUIT; recovery replays WAL on start); fast: a clean shutdown."""
        sig = {"immediate": signal.SIGQUIT, "fast": signal.SIGINT}[mode]
        try:
            os.kill(self._postmaster_pid(), sig)
        except (FileNotFoundError, ProcessLookupError):
            pass
        if self.process:
            self.process.wait(30)
        wait_for(lambda: not port_open(self.port), 30, "PostgreSQL stopped")

    def createdb(self, name: str = "buildboard") -> None:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres",
                             autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')

    def destroy(self) -> None:
        if self.process and self.process.poll() is None:
            self.stop("fast")
        self.log.close()
        shutil.rmtree(self.base, ignore_errors=True)


class RedisServer:
    """redis-server with AOF (appendfsync everysec) in a directory of its own, on a free port."""

    def __init__(self):
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="bb-faults-redis-")
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(redis_command(self.port, self.dir), stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL, start_new_session=True)
        wait_for(self.ready, 60, "Redis answering PING (its AOF replayed)")

    def ready(self) -> bool:
        import redis

        return redis.Redis(port=self.port, socket_connect_timeout=0.5).ping()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def destroy(self) -> None:
        if self.process and self.process.poll() is None:
            self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


class Service:
    """One of the project's processes (uvicorn, Celery worker, beat), in its own process group so that
    kill() takes its children with it, as the loss of a machine would."""

    def __init__(self, name: str, args: list[str], env: dict, logdir: Path, ready=None):
        self.name, self.args, self.env, self.ready = name, args, env, ready
        self.logfile = logdir / f"{name}.log"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.logfile, "ab") as log:
            self.process = subprocess.Popen([sys.executable, *self.args], cwd=BASE_DIR, env=self.env, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        if self.ready:
            wait_for(lambda: self.process.poll() is None and self.ready(), 60, f"{self.name} ready")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.logfile.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""
