"""Celery tasks that ingest worker reports. Idempotent, safe to run twice or out of order."""

from datetime import datetime

from celery import shared_task
from django.db import DatabaseError, transaction
from django.utils.dateparse import parse_datetime

from . import events, services
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


@shared_task(acks_late=True, **RETRY)
def ingest_log_parts(job_id: int, attempt: int, parts: list[dict]) -> None:
    """Store a batch of log parts; duplicates are skipped and the log cap is enforced here too."""
    with transaction.atomic():
        job = _locked_job(job_id)
        if job is None or job.attempt != attempt:
            return
        was_consistent = (job.exit_code, job.inconsistent, job.log_truncated)
        stored = job.store_log_parts(attempt, parts)
        events.announce_log_parts(job, stored)
        if was_consistent != (job.exit_code, job.inconsistent, job.log_truncated) or job.log_complete:
            events.announce_job(job)
