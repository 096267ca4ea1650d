"""Celery tasks that ingest worker reports. Idempotent, safe to run twice or out of order."""

from datetime import datetime

from celery import shared_task
from django.db import DatabaseError, transaction
from django.utils.dateparse import parse_datetime

from . import events, ingest, services
from .models import Job

RETRY = {"autoretry_for": (DatabaseError,), "retry_backoff": True, "retry_backoff_max": 60, "max_retries": 10}


def _locked_job(job_id: int) -> Job | None:
    return Job.objects.select_for_update().filter(pk=job_id).first()


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
    duplicates skipped, and the log cap enforced."""
    with transaction.atomic():
        job = _locked_job(job_id)
        if job is None:
            return
        parts = [part for attempt, batch in batches if attempt == job.attempt for part in batch]
        if not parts:
            return
        before = (job.exit_code, job.inconsistent, job.log_truncated, job.log_complete)
        stored = job.store_log_parts(job.attempt, parts)
        events.announce_log_parts(job, stored)
        if before != (job.exit_code, job.inconsistent, job.log_truncated, job.log_complete):
            events.announce_job(job)


@shared_task(acks_late=True, **RETRY)
def ingest_log_parts(job_id: int, attempt: int, parts: list[dict]) -> None:
    """Store one batch of log parts (the buffered path below is what the API uses)."""
    store_log_parts(job_id, [(attempt, parts)])


@shared_task(acks_late=True, **RETRY)
def flush_log_parts(job_id: int, token: str) -> None:
    """Drain a job's buffered log parts into the database (see jobs/ingest.py)."""
    ingest.drain(job_id, token, store_log_parts)


@shared_task(acks_late=True)
def sweep_log_buffers() -> int:
    """Reschedule buffers whose flush was lost with a dead worker; returns how many."""
    count = 0
    for job_id in ingest.orphaned_jobs():
        token = ingest.claim(job_id)
        if token:
            flush_log_parts.delay(job_id, token)
            count += 1
    return count
