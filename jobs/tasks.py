"""Celery tasks that ingest worker reports. Idempotent, safe to run twice or out of order."""

import logging
from datetime import datetime

from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import DatabaseError, transaction
from django.utils.dateparse import parse_datetime

from buildboard.lib.compiled import Compiled

from . import archiving, card, events, ingest, services
from .models import DeadLetter, Job

log = logging.getLogger(__name__)

RETRY = {"autoretry_for": (DatabaseError,), "retry_backoff": True, "retry_backoff_max": 60, "max_retries": 10}
PLACEHOLDER = ("\x1b[33;1m[buildboard] Part {number} of this log could not be stored and was set aside for "
               "staff ({error}).\x1b[0m\n")


# Every drain round locks its job first: the query is compiled once (see buildboard/lib/compiled.py).
_lock_job = Compiled(Job, lambda pk: Job.objects.select_for_update().filter(pk=pk), 1, write=True)


def _locked_job(job_id: int) -> Job | None:
    found = _lock_job(job_id)
    return found[0] if found else None


@shared_task(acks_late=True, **RETRY)
def apply_job_state(job_id: int, attempt: int, state: str, at: str, worker: str = "", worker_version: str = "",
                    exit_code: int | None = None) -> None:
    """Fold one state report into the job and its build."""
    at_dt: datetime = parse_datetime(at)
    with transaction.atomic():
        job = _locked_job(job_id)
        if job is None or job.attempt != attempt:
            return  # deleted, or a report about an attempt that has been superseded
        if job.apply_report(state=state, at=at_dt, worker=worker, worker_version=worker_version,
                            exit_code=exit_code):
            events.announce_job(job)
            services.build_refresh(build_id=job.build_id)


def store_log_parts(job_id: int, batches: list[tuple[int, list[dict]]]) -> None:
    """Store batches of (attempt, parts) in one transaction; parts of superseded attempts are dropped,
    duplicates skipped, and the log cap enforced. Called outside any transaction (the drain's contract:
    stored means committed), so the job's card hears of the new progress as soon as the block ends."""
    job = _store_log_parts(job_id, batches)
    if job is not None:
        card.update(job)


def _store_log_parts(job_id: int, batches: list[tuple[int, list[dict]]]) -> Job | None:
    with transaction.atomic():
        job = _locked_job(job_id)
        if job is None:
            return
        parts = [part for attempt, batch in batches if attempt == job.attempt for part in batch]
        if not parts:
            return None
        before = (job.exit_code, job.inconsistent, job.log_truncated, job.log_complete)
        stored = job.store_log_parts(job.attempt, parts)
        # Parts the API announced from the buffer were shown already; the rest are announced now.
        announced = {part["number"] for part in parts if part.get("announced_us")}
        events.announce_log_parts(job, [p for p in stored if p.number not in announced])
        if before != (job.exit_code, job.inconsistent, job.log_truncated, job.log_complete):
            events.announce_job(job)
    return job


@shared_task(acks_late=True, **RETRY)
def ingest_log_parts(job_id: int, attempt: int, parts: list[dict]) -> None:
    """Store one batch of log parts (the buffered path below is what the API uses)."""
    store_log_parts(job_id, [(attempt, parts)])


def set_aside_log_parts(job_id: int, poison: list[ingest.Poison]) -> None:
    """Keep parts that cannot be stored as dead letters for staff, and store a marker in each one's place,
    so the log stays contiguous (persisted_through moves on, readers see what is missing)."""
    with transaction.atomic():
        DeadLetter.objects.bulk_create([
            DeadLetter(job_id=job_id, attempt=p.attempt, number=p.number, payload=p.item, error=p.error)
            for p in poison])
        job = _locked_job(job_id)
        markers = [{"number": p.number, "final": p.final, "content": PLACEHOLDER.format(
            number=p.number, error=p.error.split(":", 1)[0])} for p in poison
            if job is not None and p.number is not None and p.attempt == job.attempt]
        if markers:
            stored = job.store_log_parts(job.attempt, markers)
            events.announce_log_parts(job, stored)
    if job is not None:
        card.update(job)
    log.error("job %s: %d log part(s) set aside as dead letters: %s", job_id, len(poison), poison[0].error)


@shared_task(acks_late=True)
def flush_log_parts(job_id: int, token: str) -> None:
    """Drain a job's buffered log parts into the database (see jobs/ingest.py); hand over to a fresh
    task when there is more than one run should take."""
    outcome, handover = ingest.flush(job_id, token, store_log_parts, set_aside_log_parts)
    if outcome == ingest.MORE:
        flush_log_parts.delay(job_id, handover)


@shared_task(acks_late=True)
def sweep_log_buffers() -> int:
    """Beat runs this every LOG_SWEEP_SECONDS: reschedule buffers without a live owner (their worker
    died or stalled past the lease); returns how many."""
    count = 0
    for job_id in ingest.orphaned_jobs():
        token = ingest.claim(job_id)
        if token:
            flush_log_parts.delay(job_id, token)
            count += 1
    return count


# Storage errors are all retried: botocore's, a filesystem's, a read-back that does not match.
ARCHIVE_RETRY = {"autoretry_for": (Exception,), "retry_backoff": 5, "retry_backoff_max": 600, "retry_jitter": True,
                 "max_retries": 8}  # about half an hour; then the scan queues it again


@shared_task(acks_late=True, **ARCHIVE_RETRY)
def archive_log(job_id: int, attempt: int) -> str:
    """Move one finished attempt's log to the log storage (see jobs/archiving.py). Safe to run twice: the
    second run finds the archive and does nothing. While the storage fails it retries with backoff and
    the parts stay in the database; beat's scan would also pick the attempt up again."""
    return archiving.archive_attempt(job_id, attempt)


@shared_task(acks_late=True)
def archive_scan(limit: int = 500) -> int:
    """Beat runs this every LOG_ARCHIVE_SCAN_SECONDS: queue the attempts whose logs are due."""
    if not settings.LOG_ARCHIVE:
        return 0
    queued = 0
    for job_id, attempt in archiving.due(limit=limit):
        # Once per quarter hour at most: an attempt whose task is still retrying is not queued twice.
        if cache.add(f"archive-queued:{job_id}:{attempt}", 1, timeout=900):
            archive_log.delay(job_id, attempt)
            queued += 1
    return queued


@shared_task(acks_late=True)
def expire_logs() -> int:
    """Beat runs this hourly: delete archived logs past their retention (their jobs and builds stay)."""
    return archiving.expire()
