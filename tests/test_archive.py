"""Finished logs move to the log storage: a real S3 API (moto's server on a free port) and the filesystem,
both. Every reader serves an archived log byte for byte as it served it from the database."""

import random
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import boto3
import pytest
import time_machine
from django.core.files.storage import storages
from django.core.management import call_command
from django.utils import timezone

from jobs import api, archiving, services, tasks
from jobs.consumers import JobConsumer
from jobs.models import Job, LogArchive, LogPart

from .conftest import free_port

pytestmark = pytest.mark.django_db

AT = "2026-11-26T10:00:00+00:00"
E = "\x1b"
BUCKET = "buildboard-logs"


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3 API server (moto's server mode) on a free port, for the whole session."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


def s3_storage(endpoint: str, bucket: str = BUCKET, prefix: str = "ci/logs") -> dict:
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": {
        "bucket_name": bucket, "location": prefix, "endpoint_url": endpoint, "access_key": "testing",
        "secret_key": "testing", "region_name": "us-east-1", "file_overwrite": True, "default_acl": None,
        "querystring_auth": False}}


@pytest.fixture(params=["filesystem", "s3"])
def log_storage(request, settings, tmp_path):
    """The log storage of one backend, empty; yields its kind."""
    if request.param == "s3":
        endpoint = request.getfixturevalue("moto_endpoint")
        bucket = f"logs-{random.randrange(1 << 30)}"
        boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket=bucket)
        config = s3_storage(endpoint, bucket)
    else:
        config = {"BACKEND": "django.core.files.storage.FileSystemStorage",
                  "OPTIONS": {"location": str(tmp_path / "logs"), "allow_overwrite": True}}
    settings.STORAGES = {**settings.STORAGES, "logs": config}
    settings.LOG_ARCHIVE_GRACE = 600
    yield request.param


def parts_of(count: int, lines_each: int = 7, final: bool = True) -> list[dict]:
    """Parts with colours, a fold marker, a multi-byte character and an escape split across two parts."""
    parts = []
    for n in range(count):
        text = "".join(f"{E}[3{i % 8}mline {n}.{i} é ✓{E}[0m\r\n" for i in range(lines_each))
        if n == 1:
            text += f"{E}]0;title"  # an OSC sequence that ends in the next part
        if n == 2:
            text = f"{E}\\" + text
        parts.append({"number": n, "content": text, "final": final and n == count - 1})
    return parts


def finish(job: Job, parts: list[dict], state: str = "passed") -> Job:
    tasks.apply_job_state(job.pk, job.attempt, "started", AT)
    tasks.ingest_log_parts(job.pk, job.attempt, parts)
    tasks.apply_job_state(job.pk, job.attempt, state, AT, exit_code=0 if state == "passed" else 1)
    job.refresh_from_db()
    return job


def replay(job: Job, after: int = -1) -> list[dict]:
    job = Job.objects.get(pk=job.pk)
    return JobConsumer()._backlog(job, after)


def everything_read(client, job: Job, attempt: int | None = None) -> dict:
    """What every reader answers for the job's log, as bytes or JSON."""
    q = f"attempt={attempt}&" if attempt else ""
    read = {
        "txt": client.get(f"/jobs/{job.pk}/log.txt?{q}").getvalue(),
        "txt_plain": client.get(f"/jobs/{job.pk}/log.txt?{q}ansi=0").getvalue(),
        "txt_download": client.get(f"/jobs/{job.pk}/log.txt?{q}ansi=0&download=1").getvalue(),
    }
    for after, limit in ((-1, 1000), (-1, 2), (3, 2), (4, 1000), (50, 10)):
        response = client.get(f"/api/v1/jobs/{job.pk}/log?{q}after={after}&limit={limit}")
        assert response.status_code == 200
        read[f"api {after} {limit}"] = response.content
    if attempt is None:
        read["ws"] = [replay(job, after) for after in (-1, 2)]
    return read


def test_every_reader_serves_an_archived_log_byte_for_byte(client, job, log_storage):
    finish(job, parts_of(6))
    before = everything_read(client, job)
    assert client.get(f"/api/v1/jobs/{job.pk}").json()["log"]["archived"] is False

    assert tasks.archive_scan() == 1
    assert LogPart.objects.filter(job=job).count() == 0
    saved = LogArchive.objects.get(job=job)
    assert saved.parts == 6 and saved.size == sum(len(p["content"].encode()) for p in parts_of(6))
    assert storages["logs"].exists(saved.key)
    assert everything_read(client, job) == before
    log = client.get(f"/api/v1/jobs/{job.pk}").json()["log"]
    assert log["archived"] is True
    assert (log["archived_bytes"], log["compressed_bytes"]) == (saved.size, saved.compressed_size)
    assert log["complete"] is True and log["persisted_through"] == 5
    assert client.get(f"/jobs/{job.pk}/").status_code == 200


def test_archiving_again_is_a_no_op(job, log_storage):
    finish(job, parts_of(3))
    assert archiving.archive_attempt(job.pk, 1) == "archived"
    first = LogArchive.objects.get(job=job)
    assert archiving.archive_attempt(job.pk, 1) == "already"
    assert tasks.archive_scan() == 0
    assert list(LogArchive.objects.values_list("pk", "sha256")) == [(first.pk, first.sha256)]


def test_a_running_job_or_an_incomplete_log_within_the_grace_is_not_archived(job, log_storage):
    tasks.apply_job_state(job.pk, 1, "started", AT)
    tasks.ingest_log_parts(job.pk, 1, parts_of(3, final=False))
    assert archiving.archive_attempt(job.pk, 1) == "not due"
    tasks.apply_job_state(job.pk, 1, "passed", AT, exit_code=0)
    job.refresh_from_db()
    assert not job.log_complete
    # finished_at is the reported time (long ago), but parts came just now: the grace counts from them.
    assert archiving.archive_attempt(job.pk, 1) == "not due"
    with time_machine.travel(timezone.now() + timedelta(seconds=601)):
        assert archiving.due() == [(job.pk, 1)]
        assert archiving.archive_attempt(job.pk, 1) == "archived"


def test_a_part_arriving_after_archiving_gets_the_same_answer_and_nothing_is_lost(client, job, log_storage):
    finish(job, parts_of(4))
    assert archiving.archive_attempt(job.pk, 1) == "archived"
    text = client.get(f"/jobs/{job.pk}/log.txt").getvalue()
    tasks.ingest_log_parts(job.pk, 1, [{"number": 2, "content": "a resent duplicate\n"}])
    job.refresh_from_db()
    assert job.log_persisted_through == 3 and not LogPart.objects.filter(job=job).exists()
    assert client.get(f"/jobs/{job.pk}/log.txt").getvalue() == text
    # Beyond the final part: stored as it would have been before archiving, and read after the archive.
    tasks.ingest_log_parts(job.pk, 1, [{"number": 4, "content": "late\n"}])
    job.refresh_from_db()
    assert job.log_persisted_through == 4
    assert client.get(f"/jobs/{job.pk}/log.txt").getvalue() == text + b"late\n"
    numbers = [p["number"] for p in client.get(f"/api/v1/jobs/{job.pk}/log?after=2").json()["parts"]]
    assert numbers == [3, 4]


def test_a_gap_archived_after_the_grace_still_knows_its_parts(client, job, log_storage):
    parts = parts_of(5, final=False)
    finish(job, [parts[0], parts[1], parts[3]])
    with time_machine.travel(timezone.now() + timedelta(seconds=601)):
        assert archiving.archive_attempt(job.pk, 1) == "archived"
    assert LogArchive.objects.get(job=job).beyond == [3]
    tasks.ingest_log_parts(job.pk, 1, [parts[3], parts[2]])  # 3 again (a duplicate), 2 fills the gap
    job.refresh_from_db()
    assert job.log_persisted_through == 3
    assert list(LogPart.objects.filter(job=job).values_list("number", flat=True)) == [2]
    assert [p["number"] for p in client.get(f"/api/v1/jobs/{job.pk}/log").json()["parts"]] == [0, 1, 2, 3]


def test_restarting_an_archived_job_starts_a_new_attempt_and_the_old_one_stays_readable(client, job, log_storage):
    finish(job, parts_of(3), state="failed")
    assert archiving.archive_attempt(job.pk, 1) == "archived"
    assert services.job_restart(job=job)
    job.refresh_from_db()
    assert job.attempt == 2
    assert client.get(f"/api/v1/jobs/{job.pk}").json()["log"]["archived"] is False
    finish(job, [{"number": 0, "content": "second\n", "final": True}])
    text = "".join(p["content"] for p in parts_of(3))
    assert client.get(f"/jobs/{job.pk}/log.txt?attempt=1").getvalue() == text.encode()
    earlier = client.get(f"/api/v1/jobs/{job.pk}/log?attempt=1&after=0").json()
    assert [p["content"] for p in earlier["parts"]] == [p["content"] for p in parts_of(3)[1:]]
    assert earlier["complete"] is True and earlier["persisted_through"] == 2
    assert client.get(f"/jobs/{job.pk}/log.txt").getvalue() == b"second\n"
    assert client.get(f"/jobs/{job.pk}/?attempt=1").status_code == 200


def test_an_earlier_attempt_left_in_the_database_is_archived_too(client, job, log_storage):
    finish(job, parts_of(2), state="failed")
    assert services.job_restart(job=job)
    before = everything_read(client, job, attempt=1)
    assert archiving.due() == [(job.pk, 1)]
    assert tasks.archive_scan() == 1
    assert everything_read(client, job, attempt=1) == before


@pytest.mark.parametrize("damage", ["missing", "corrupt"])
def test_a_missing_or_corrupt_object_is_a_clear_message_never_a_crash(client, staff, job, log_storage,
                                                                        damage):
    finish(job, parts_of(3))
    assert archiving.archive_attempt(job.pk, 1) == "archived"
    saved = LogArchive.objects.get(job=job)
    storage = storages["logs"]
    storage.delete(saved.key)
    if damage == "corrupt":
        from django.core.files.base import ContentFile

        storage.save(saved.key, ContentFile(b"\x1f\x8b not what was written" * 10))
    message = f"log unavailable: archive object {damage}"
    response = client.get(f"/api/v1/jobs/{job.pk}/log")
    assert response.status_code == 410 and response.json()["error"] == message
    txt = client.get(f"/jobs/{job.pk}/log.txt")
    assert txt.status_code == 410 and txt.content.decode().strip() == message
    page = client.get(f"/jobs/{job.pk}/")
    assert page.status_code == 200 and f"Log unavailable: archive object {damage}" in page.content.decode()
    assert replay(job) == [{"type": "log.unavailable", "job_id": job.pk, "attempt": 1, "message": message}]
    assert client.get(f"/builds/{job.build_id}/").status_code == 200
    saved.refresh_from_db()
    assert saved.problem == message
    fleet = staff.get("/fleet/").content.decode()
    assert message in fleet


def test_expired_logs_are_deleted_and_the_job_page_says_when(client, job, log_storage, settings):
    settings.LOG_RETENTION_DAYS = 30
    start = timezone.now()
    with time_machine.travel(start, tick=False):
        finish(job, parts_of(2))
        assert archiving.archive_attempt(job.pk, 1) == "archived"
    key = LogArchive.objects.get(job=job).key
    with time_machine.travel(start + timedelta(days=29), tick=False):
        assert tasks.expire_logs() == 0
    with time_machine.travel(start + timedelta(days=30, seconds=1), tick=False):
        assert tasks.expire_logs() == 1
        assert tasks.expire_logs() == 0
    assert not storages["logs"].exists(key)
    saved = LogArchive.objects.get(job=job)
    assert saved.expired_at == start + timedelta(days=30, seconds=1)
    when = f"{saved.expired_at:%Y-%m-%d}"
    response = client.get(f"/api/v1/jobs/{job.pk}/log")
    assert response.status_code == 410 and response.json()["error"] == f"log expired on {when}"
    page = client.get(f"/jobs/{job.pk}/").content.decode()
    assert f"This log was deleted on {when}" in page and "30 days" in page
    detail = client.get(f"/api/v1/jobs/{job.pk}").json()
    assert detail["state"] == "passed" and detail["log"]["expired_at"]
    assert Job.objects.filter(pk=job.pk).exists()


def test_a_repository_may_keep_its_logs_longer_or_forever(job, log_storage, settings):
    settings.LOG_RETENTION_DAYS = 30
    repository = job.build.repository
    repository.log_retention_days = 0
    repository.save()
    finish(job, parts_of(2))
    assert archiving.archive_attempt(job.pk, 1) == "archived"
    with time_machine.travel(timezone.now() + timedelta(days=3650)):
        assert tasks.expire_logs() == 0


class _Failing(BaseHTTPRequestHandler):
    def _fail(self):
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _fail

    def log_message(self, *args):
        pass


@pytest.mark.parametrize("fault", ["5xx", "unreachable"])
def test_a_failing_storage_leaves_the_parts_in_the_database(client, job, settings, fault):
    server = None
    if fault == "5xx":
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Failing)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    else:
        endpoint = f"http://127.0.0.1:{free_port()}"
    config = s3_storage(endpoint)
    config["OPTIONS"]["client_config"] = __import__("botocore.config").config.Config(
        retries={"max_attempts": 1}, connect_timeout=1, read_timeout=1)
    settings.STORAGES = {**settings.STORAGES, "logs": config}
    try:
        finish(job, parts_of(3))
        before = client.get(f"/jobs/{job.pk}/log.txt").getvalue()
        with pytest.raises(Exception):  # noqa: B017 (botocore's errors differ by fault)
            archiving.archive_attempt(job.pk, 1)
        assert LogPart.objects.filter(job=job).count() == 3 and not LogArchive.objects.exists()
        assert client.get(f"/jobs/{job.pk}/log.txt").getvalue() == before
        assert tasks.archive_log.autoretry_for == (Exception,) and tasks.archive_log.retry_backoff
        assert archiving.totals()["backlog"] == 1
    finally:
        if server:
            server.shutdown()


def test_the_scan_queues_an_attempt_once_while_its_task_retries(job, log_storage, settings):
    from celery import current_app

    finish(job, parts_of(2))
    current_app.conf.task_always_eager = False  # queued, not run: as while a retry waits
    try:
        assert tasks.archive_scan() == 1
        assert tasks.archive_scan() == 0
    finally:
        current_app.conf.task_always_eager = True


def test_backfill_command_archives_in_batches_and_resumes(make_build, log_storage, capsys):
    jobs = [make_build(repository=f"acme/r{i}").jobs.get() for i in range(5)]
    for job in jobs:
        finish(job, parts_of(2))
    call_command("archive_logs", "--dry-run")
    out = capsys.readouterr()
    assert "5 attempt(s) to archive" in out.out and not LogArchive.objects.exists()
    call_command("archive_logs", "--batch", "2", "--limit", "3")  # as if interrupted after three
    assert LogArchive.objects.count() == 3
    call_command("archive_logs", "--batch", "2")
    assert LogArchive.objects.count() == 5 and not LogPart.objects.exists()
    assert "archived 2" in capsys.readouterr().out


def test_backfill_older_than_leaves_recent_jobs(job, log_storage, capsys):
    finish(job, parts_of(2))
    job.refresh_from_db()
    with time_machine.travel(job.finished_at + timedelta(minutes=30)):
        call_command("archive_logs", "--older-than", "1h")
    assert not LogArchive.objects.exists()
    with time_machine.travel(job.finished_at + timedelta(minutes=61)):
        call_command("archive_logs", "--older-than", "1h")
    assert LogArchive.objects.count() == 1


def test_the_object_is_plain_gzip_with_its_index(job, log_storage):
    import gzip
    import json

    finish(job, parts_of(3))
    archiving.archive_attempt(job.pk, 1)
    saved = LogArchive.objects.get(job=job)
    with storages["logs"].open(saved.key, "rb") as f:
        whole = gzip.decompress(f.read())
    text = "".join(p["content"] for p in parts_of(3)).encode()
    assert whole.startswith(text)
    index = json.loads(whole[len(text):])["parts"]
    assert [(n, offset, length) for n, offset, length, *_ in index] == [
        (0, 0, len(parts_of(3)[0]["content"].encode())),
        (1, len(parts_of(3)[0]["content"].encode()), len(parts_of(3)[1]["content"].encode())),
        (2, len("".join(p["content"] for p in parts_of(3)[:2]).encode()), len(parts_of(3)[2]["content"].encode()))]


def test_streamed_ansi_stripping_equals_stripping_the_whole_text():
    rng = random.Random(10)
    alphabet = ["a", "\n", E, "[", "]", "3", "1", "m", ";", "\x07", "\\", "é", "0"]
    for _ in range(3000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 40)))
        cuts = sorted(rng.sample(range(len(text) + 1), min(len(text) + 1, rng.randrange(0, 6))))
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        assert "".join(api.strip_ansi(pieces)) == api.ANSI_ESCAPES.sub("", text), (text, pieces)


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_kill_9_of_the_archiving_worker_loses_nothing_and_shows_no_half_state(client, make_build, settings,
                                                                             moto_endpoint):
    """A real Celery worker archives to the S3 server and is killed with SIGKILL at random moments, again and
    again: after every kill each attempt is either all in the database or archived, never half of each, and
    every log reads back the same; a last worker finishes the rest."""
    import subprocess
    import time

    from celery import current_app

    from .conftest import BASE_DIR, python_module, stop_process, subprocess_env, wait_until

    bucket = f"kill-{random.randrange(1 << 30)}"
    boto3.client("s3", endpoint_url=moto_endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                 region_name="us-east-1").create_bucket(Bucket=bucket)
    settings.STORAGES = {**settings.STORAGES, "logs": s3_storage(moto_endpoint, bucket, "kill")}
    env = subprocess_env(LOG_STORAGE_URL=f"s3://{bucket}/kill", AWS_S3_ENDPOINT_URL=moto_endpoint,
                         AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing", AWS_S3_REGION_NAME="us-east-1")
    jobs = [make_build(repository=f"acme/k{i}").jobs.get() for i in range(30)]
    for job in jobs:
        finish(job, parts_of(40, lines_each=20))
    expected = {job.pk: client.get(f"/jobs/{job.pk}/log.txt").getvalue() for job in jobs}

    def consistent() -> int:
        archived = set(LogArchive.objects.values_list("job_id", flat=True))
        for job in jobs:
            live = LogPart.objects.filter(job=job).count()
            assert live == (0 if job.pk in archived else 40), (job.pk, live)
            assert client.get(f"/jobs/{job.pk}/log.txt").getvalue() == expected[job.pk]
        return len(archived)

    current_app.conf.task_always_eager = False
    rng = random.Random(9)
    try:
        for _ in range(6):
            for job in jobs:
                if not LogArchive.objects.filter(job=job).exists():
                    tasks.archive_log.delay(job.pk, 1)
            worker = subprocess.Popen(python_module("celery", "-A", "buildboard", "worker", "--pool", "solo",
                                                    "-l", "error", "--without-heartbeat", "--without-mingle",
                                                    "--without-gossip"), cwd=BASE_DIR, env=env)
            time.sleep(rng.uniform(2.0, 4.0))
            worker.kill()  # SIGKILL, wherever it is
            worker.wait()
            consistent()
        for job in jobs:
            if not LogArchive.objects.filter(job=job).exists():
                tasks.archive_log.delay(job.pk, 1)
        worker = subprocess.Popen(python_module("celery", "-A", "buildboard", "worker", "--pool", "solo", "-l",
                                                "error", "--without-heartbeat", "--without-mingle",
                                                "--without-gossip"), cwd=BASE_DIR, env=env)
        try:
            wait_until(lambda: LogArchive.objects.count() == len(jobs), timeout=120)
        finally:
            stop_process(worker)
        assert consistent() == len(jobs)
        assert not LogPart.objects.exists()
    finally:
        current_app.conf.task_always_eager = True
