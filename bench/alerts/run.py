"""bench/alerts: how long one evaluation of every alert rule takes on a busy day's data.

Seeds a scratch database with a day of jobs (default 200 000, across queues and worker versions, with
failures and a few inconsistent ones), a fleet of instances and their errors, then times
`alerts_evaluate` (what Celery beat runs every 30 s) against a bare baseline measured in the same run:
one indexed count of the jobs finished in the last hour, the least any rule has to read. Usage
(PostgreSQL as in the README; the scratch database is created and dropped):

    .venv/bin/python bench/alerts/run.py [--jobs 200000] [--workers 300] [--rounds 5]
"""

import argparse
import os
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(BASE_DIR))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "buildboard.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/buildboard")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200_000)
    parser.add_argument("--workers", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment

    setup_test_environment()
    # A scratch database next to the configured one, created and dropped by Django's test machinery.
    old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    try:
        seed(args.jobs, args.workers)
        measure(args.rounds, args.jobs)
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)


def seed(jobs: int, workers: int) -> None:
    from django.db import connection
    from django.utils import timezone

    from fleet.models import ErrorSignature, Worker, WorkerError, error_signature
    from jobs.models import Build, Job, Repository

    rng = random.Random(1)
    now = timezone.now()
    started = time.perf_counter()
    repo = Repository.objects.create(owner="bench", name="alerts")
    queues = ["builds.linux", "builds.mac", "builds.windows"]
    versions = ["v2.5.0", "v2.5.1", "v2.6.0", "v2.6.2"]
    per_build = 5
    builds = Build.objects.bulk_create(
        [Build(repository=repo, number=n + 1, branch="main", commit="c", state="passed")
         for n in range(jobs // per_build)], batch_size=5000)
    batch = []
    for i in range(jobs):
        finished = now - timedelta(seconds=rng.uniform(0, 86400))
        failed = rng.random() < 0.06
        state, code = ("failed", 1) if failed else ("passed", 0)
        inconsistent = rng.random() < 0.001
        if inconsistent:
            state = "failed" if code == 0 else "passed"
        batch.append(Job(build=builds[i // per_build], number=str(i % per_build + 1), queue=rng.choice(queues),
                         state=state, exit_code=code, inconsistent=inconsistent,
                         worker=f"w{rng.randrange(workers)}", worker_version=rng.choice(versions),
                         queued_at=finished - timedelta(minutes=5), started_at=finished - timedelta(minutes=4),
                         finished_at=finished, last_activity_at=finished))
        if len(batch) == 10_000:
            Job.objects.bulk_create(batch)
            batch = []
    Job.objects.bulk_create(batch)
    fleet = Worker.objects.bulk_create([
        Worker(name=f"w{n}", queue=queues[n % 3], version=versions[n % 4], pool_size=4, busy=rng.randint(0, 4),
               state="in_service", state_since=now - timedelta(hours=3), first_seen_at=now - timedelta(hours=3),
               last_seen_at=now - timedelta(seconds=rng.uniform(0, 30)), heartbeats=300)
        for n in range(workers)])
    messages = ["dial tcp 10.0.{a}.{b}:2376: connect: connection refused", "log part {a} upload retried after {b}s"]
    signatures = {}
    occurrences = []
    for n in range(workers * 20):
        worker = rng.choice(fleet)
        text = rng.choice(messages).format(a=rng.randint(0, 255), b=rng.randint(0, 255))
        sig = error_signature(text)
        key = (worker.queue, sig)
        if key not in signatures:
            signatures[key] = ErrorSignature.objects.create(
                queue=worker.queue, digest=ErrorSignature.digest_of(sig), signature=sig,
                first_seen_at=now - timedelta(days=1), last_seen_at=now)
        occurrences.append(WorkerError(signature=signatures[key], worker=worker, message=text,
                                       at=now - timedelta(seconds=n * 86400 / (workers * 20))))
    WorkerError.objects.bulk_create(occurrences, batch_size=5000, ignore_conflicts=True)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("ANALYZE")
    print(f"seeded {jobs} jobs, {workers} workers, {len(occurrences)} worker errors "
          f"in {time.perf_counter() - started:.1f} s ({connection.vendor})")


def timed(fn, rounds: int) -> float:
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def measure(rounds: int, jobs: int) -> None:
    from django.utils import timezone

    from fleet.alerts import alerts_evaluate
    from fleet.models import Alert
    from jobs.models import Job

    def baseline() -> None:
        Job.objects.filter(finished_at__gte=timezone.now() - timedelta(hours=1)).count()

    def evaluate() -> None:
        alerts_evaluate(now=timezone.now())

    evaluate()  # warm caches and create the rule rows
    bare = timed(baseline, rounds)
    full = timed(evaluate, rounds)
    print(f"baseline (count of jobs finished in the last hour): {bare * 1000:8.1f} ms")
    print(f"alerts_evaluate (8 rules, stale sweep):             {full * 1000:8.1f} ms  "
          f"({full / bare:.1f}x baseline; budget: the 30 s beat interval, {full / 30:.2%} of it)")
    print(f"open alerts after evaluation: {Alert.objects.open().count()} "
          f"({', '.join(sorted(set(Alert.objects.values_list('rule', flat=True)))) or 'none'})")


if __name__ == "__main__":
    main()
