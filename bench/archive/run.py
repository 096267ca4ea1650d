"""bench/archive: what archiving finished logs saves and costs, as ratios measured in one run.

- database size: bytes of the log tables in PostgreSQL (table + TOAST + indexes: pg_total_relation_size of
  jobs_logpart and jobs_logarchive) per million log lines, with the logs live, then after archiving
  (and VACUUM FULL, so freed pages count as freed). Target: >= 20x smaller.
- archive throughput: lines per second through jobs.archiving.archive_attempt (read the parts, compress,
  upload, read back and verify, record, delete) against a baseline that only gzips the same text and
  writes it to the same storage. Target: >= 50% of the baseline. gzip and zstd are compared on the
  same text (size and compression time) to record why the objects are gzip.
- read time: the job page opened at #L100000 in headless Chromium for a 100,000-line archived log
  against the same log live in the database (bench/viewer's measurement). Target: <= 1.2x.

Usage: .venv/bin/python bench/archive/run.py [--jobs 100] [--lines-per-job 10000] [--rounds 3] [--s3]
(--s3: the log storage is moto's S3 server on a free port, else a temporary directory.) The benchmark
runs its own PostgreSQL cluster (as the fault suite does): on a shared server, another session's open
transaction keeps deleted rows from being vacuumed away, and the "after" size would measure that instead.
--database-url uses a given server instead.
"""

import argparse
import gzip
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BASE_DIR))

from bench.common import prepare_database  # noqa: E402
from bench.viewer import run as viewer  # noqa: E402
from buildboard.lib.redis_server import ensure_redis, free_port  # noqa: E402

LINES_PER_PART = 100  # a worker sends a part every few hundred milliseconds: tens to hundreds of lines


def log_parts(lines: int) -> list[dict]:
    parts = viewer.log_parts(lines)  # 1000 lines a part: split them as a worker would send them
    text = "".join(p["content"] for p in parts)
    rows = text.splitlines(keepends=True)
    out = [{"number": n, "content": "".join(rows[i:i + LINES_PER_PART])}
           for n, i in enumerate(range(0, len(rows), LINES_PER_PART))]
    out[-1]["final"] = True
    return out


def table_bytes() -> int:
    from django.db import connection

    with connection.cursor() as c:
        c.execute("SELECT pg_total_relation_size('jobs_logpart') + pg_total_relation_size('jobs_logarchive')")
        return c.fetchone()[0]


def vacuum_full() -> None:
    from django.db import connection

    with connection.cursor() as c:
        c.execute("VACUUM FULL jobs_logpart")
        c.execute("VACUUM FULL jobs_logarchive")


def seed_job(repository: str, parts: list[dict]) -> int:
    from jobs import tasks
    from jobs.models import create_build

    job = create_build(repository=repository, branch="main", commit="0" * 40, jobs=[{}]).jobs.get()
    tasks.apply_job_state(job.pk, 1, "started", "2026-01-01T00:00:00+00:00", worker="bench")
    for start in range(0, len(parts), 50):
        tasks.ingest_log_parts(job.pk, 1, parts[start:start + 50])
    tasks.apply_job_state(job.pk, 1, "passed", "2026-01-01T00:10:00+00:00", exit_code=0)
    return job.pk


def compare_codecs(text: bytes) -> dict:
    import zstandard

    out = {}
    for name, compress in (("gzip-6", lambda b: gzip.compress(b, 6, mtime=0)),
                           ("zstd-3", lambda b: zstandard.ZstdCompressor(level=3).compress(b)),
                           ("zstd-9", lambda b: zstandard.ZstdCompressor(level=9).compress(b))):
        start = time.perf_counter()
        size = len(compress(text))
        out[name] = (size, time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=100)
    parser.add_argument("--lines-per-job", type=int, default=10_000)
    parser.add_argument("--view-lines", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--s3", action="store_true")
    parser.add_argument("--database-url", default=os.getenv("BENCH_DATABASE_URL", ""))
    args = parser.parse_args()
    cluster = None
    if not args.database_url:
        from tests.processes import PostgresCluster

        cluster = PostgresCluster()
        cluster.start()
        cluster.createdb()
        args.database_url = cluster.url

    redis = ensure_redis()
    storage_dir = tempfile.mkdtemp(prefix="bench-archive-")
    env = {**os.environ, "REDIS_URL": redis.url, "DATABASE_URL": args.database_url, "DEBUG": "False",
           "SECRET_KEY": "bench", "SECURE_SSL_REDIRECT": "False", "ALLOWED_HOSTS": "127.0.0.1,localhost",
           "CHANNEL_PREFIX": "bencharchive", "PYTHONPATH": str(BASE_DIR), "LOG_STORAGE_DIR": storage_dir,
           "LOG_ARCHIVE": "False", "REDIS_PERSISTENCE": "off"}
    moto = None
    if args.s3:
        import boto3
        from moto.server import ThreadedMotoServer

        port = free_port()
        moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        moto.start()
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="bench", aws_secret_access_key="bench",
                     region_name="us-east-1").create_bucket(Bucket="bench")
        env.update(LOG_STORAGE_URL="s3://bench/logs", AWS_S3_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID="bench",
                   AWS_SECRET_ACCESS_KEY="bench", AWS_S3_REGION_NAME="us-east-1")
    server = None
    try:
        prepare_database(args.database_url)
        for command in (["migrate", "--noinput", "-v0"], ["collectstatic", "--noinput", "-v0"]):
            subprocess.run([sys.executable, "manage.py", *command], cwd=BASE_DIR, env=env, check=True)
        os.environ.update(env)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildboard.settings")
        import django

        django.setup()
        from django.core.files.base import ContentFile
        from django.core.files.storage import storages

        from buildboard import celery_app
        from jobs import archiving, logread
        from jobs.models import Job, LogPart

        celery_app.conf.task_always_eager = True
        load = os.getloadavg()

        # 1. database bytes per million lines, live and archived
        parts = log_parts(args.lines_per_job)
        lines = args.jobs * args.lines_per_job
        job_ids = [seed_job(f"bench/size{i}", parts) for i in range(args.jobs)]
        vacuum_full()
        live_bytes = table_bytes()
        text = "".join(p["content"] for p in parts).encode()

        # 2. throughput: archive every job, against gzip + write of the same text to the same storage
        storage = storages["logs"]
        start = time.perf_counter()
        for i in range(len(job_ids)):
            storage.save(f"baseline/{i}.log.gz", ContentFile(gzip.compress(text, 6, mtime=0)))
        baseline_s = time.perf_counter() - start
        start = time.perf_counter()
        for job_id in job_ids:
            assert archiving.archive_attempt(job_id, 1) == "archived"
        archive_s = time.perf_counter() - start
        assert not LogPart.objects.exists()
        vacuum_full()
        archived_bytes = table_bytes()
        stored = sum(j.archives.get().compressed_size for j in Job.objects.filter(pk__in=job_ids))
        codecs = compare_codecs(text)

        # 3. read time at #L100000: the same log live and archived
        view_parts = viewer.log_parts(args.view_lines)
        live_id = seed_job("bench/view-live", view_parts)
        archived_id = seed_job("bench/view-archived", view_parts)
        assert archiving.archive_attempt(archived_id, 1) == "archived"
        live_job, archived_job = Job.objects.get(pk=live_id), Job.objects.get(pk=archived_id)
        assert logread.log_text(live_job) == logread.log_text(archived_job)
        port = free_port()
        server = subprocess.Popen([sys.executable, "-m", "uvicorn", "buildboard.asgi:application", "--port",
                                   str(port), "--log-level", "warning", "--no-access-log"], cwd=BASE_DIR, env=env)
        base = f"http://127.0.0.1:{port}"
        viewer._wait_listening(base)
        import httpx

        plain = httpx.get(f"{base}/jobs/{live_id}/log.txt?ansi=0", timeout=60).text
        assert plain == httpx.get(f"{base}/jobs/{archived_id}/log.txt?ansi=0", timeout=60).text
        pre_server, pre_url = viewer.serve_pre(plain)
        from playwright.sync_api import sync_playwright

        lives, archiveds = [], []
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=viewer.CHROMIUM,
                                        args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"])
            viewer.measure(browser, pre_url, base, live_id, args.view_lines)  # warm-up
            viewer.measure(browser, pre_url, base, archived_id, args.view_lines)
            for _ in range(args.rounds):
                lives.append(viewer.measure(browser, pre_url, base, live_id, args.view_lines)[2])
                archiveds.append(viewer.measure(browser, pre_url, base, archived_id, args.view_lines)[2])
            browser.close()
        pre_server.shutdown()
        load_after = os.getloadavg()
    finally:
        if server:
            server.terminate()
            server.wait(10)
        if moto:
            moto.stop()
        redis.stop()
        if cluster:
            from django.db import connections

            connections.close_all()
            cluster.destroy()

    per_million = 1_000_000 / lines
    print(f"storage: {'moto S3 server' if args.s3 else 'filesystem'}; load average before {load[0]:.2f} "
          f"{load[1]:.2f} {load[2]:.2f}, after {load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}")
    print(f"log: {args.jobs} jobs x {args.lines_per_job:,} lines ({len(parts)} parts of {LINES_PER_PART} lines), "
          f"{len(text):,} bytes of text per job")
    print(f"database bytes per million lines, live:     {live_bytes * per_million:14,.0f}")
    print(f"database bytes per million lines, archived: {archived_bytes * per_million:14,.0f}  "
          f"(objects in storage: {stored * per_million:,.0f} bytes per million lines)")
    print(f"ratio (live / archived): {live_bytes / archived_bytes:.1f}x  (target >= 20x)")
    print(f"baseline  gzip + write of the same text:  {lines / baseline_s:12,.0f} lines/s ({baseline_s:.2f} s)")
    print(f"archive   read, compress, upload, verify, record, delete: {lines / archive_s:12,.0f} lines/s "
          f"({archive_s:.2f} s)")
    print(f"ratio (archive / baseline): {baseline_s / archive_s:.0%}  (target >= 50%)")
    for name, (size, seconds) in codecs.items():
        print(f"codec {name}: {size:,} bytes ({len(text) / size:.1f}x) in {seconds * 1000:.0f} ms per job")
    live_ms, archived_ms = statistics.median(lives), statistics.median(archiveds)
    print(f"job page at #L{args.view_lines}, live in the database: {live_ms:8.0f} ms  {viewer._all(lives)}")
    print(f"job page at #L{args.view_lines}, archived:             {archived_ms:8.0f} ms  {viewer._all(archiveds)}")
    print(f"ratio (archived / live): {archived_ms / live_ms:.2f}  (target <= 1.2)")


if __name__ == "__main__":
    main()
