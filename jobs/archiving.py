"""What to archive and when: finished attempts with complete logs go to the log storage (jobs/archive.py
holds the object format, the storage and the reader), expired archives are deleted, and staff see totals."""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, Max, Min, OuterRef, Q, Sum
from django.utils import timezone

from . import ingest
from .archive import object_key, retention_days, storage, upload, write_object
from .models import Job, LogArchive, LogPart
from .states import FINAL_STATES

log = logging.getLogger(__name__)


# --- which attempts are due ------------------------------------------------------------------------


def _grace_over(now: datetime) -> Q:
    cutoff = now - timedelta(seconds=settings.LOG_ARCHIVE_GRACE)
    return Q(finished_at__lte=cutoff, last_activity_at__lte=cutoff)


def due_current(now: datetime | None = None, older_than: timedelta | None = None):
    """Jobs whose current attempt is finished with a complete log (or quiet past the grace) and still in
    the database."""
    now = now or timezone.now()
    complete = Q(log_truncated=True) | Q(log_final_number__isnull=False,
                                         log_persisted_through__gte=F("log_final_number"))
    jobs = Job.objects.filter(state__in=FINAL_STATES).filter(complete | _grace_over(now)).filter(
        Exists(LogPart.objects.filter(job=OuterRef("pk"), attempt=OuterRef("attempt")))).exclude(
        Exists(LogArchive.objects.filter(job=OuterRef("pk"), attempt=OuterRef("attempt"))))
    if older_than is not None:
        jobs = jobs.filter(finished_at__lte=now - older_than)
    return jobs


def due_earlier():
    """(job, attempt) of superseded attempts (restarted jobs) whose parts are still in the database."""
    return (LogPart.objects.filter(attempt__lt=F("job__attempt"))
            .exclude(Exists(LogArchive.objects.filter(job=OuterRef("job"), attempt=OuterRef("attempt"))))
            .values_list("job_id", "attempt").distinct().order_by("job_id", "attempt"))


def due(now: datetime | None = None, older_than: timedelta | None = None, limit: int | None = None
        ) -> list[tuple[int, int]]:
    """Attempts to archive, oldest first: (job id, attempt)."""
    jobs = due_current(now, older_than).order_by("finished_at", "id").values_list("id", "attempt")
    found = list(jobs[:limit] if limit else jobs)
    if limit is None or len(found) < limit:
        earlier = due_earlier()
        found += list(earlier[: limit - len(found)] if limit else earlier)
    return found


def is_due(job: Job, attempt: int, now: datetime) -> bool:
    if attempt < job.attempt:
        return True
    if attempt != job.attempt or job.state not in FINAL_STATES:
        return False
    grace = now - timedelta(seconds=settings.LOG_ARCHIVE_GRACE)
    return job.log_complete or ((job.finished_at or job.last_activity_at) <= grace and job.last_activity_at <= grace)


# --- archiving -------------------------------------------------------------------------------------


def archive_attempt(job_id: int, attempt: int, now: datetime | None = None) -> str:
    """Archive one attempt's log. Returns what happened: "archived", or why not ("already", "not due",
    "buffered", "empty", "changed"). Storage errors propagate (the caller retries); the parts stay."""
    now = now or timezone.now()
    job = Job.objects.filter(pk=job_id).first()
    if job is None:
        return "gone"
    if LogArchive.objects.filter(job_id=job_id, attempt=attempt).exists():
        return "already"
    if not is_due(job, attempt, now):
        return "not due"
    if attempt == job.attempt and ingest.pending(job_id):
        return "buffered"  # parts are still on their way from Redis
    rows = (LogPart.objects.filter(job_id=job_id, attempt=attempt).order_by("number")
            .values_list("number", "content", "final", "created_at"))
    written = write_object(rows.iterator(chunk_size=1000))
    if not written.numbers:
        return "empty"
    key = object_key(job_id, attempt)
    try:
        upload(key, written)
    finally:
        written.file.close()
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job_id)
        if LogArchive.objects.filter(job_id=job_id, attempt=attempt).exists():
            return "already"
        stored = LogPart.objects.filter(job_id=job_id, attempt=attempt)
        # A part stored since the object was written: write it again next time.
        now_there = stored.aggregate(n=Max("number"), c=Count("id"))
        if (now_there["c"], now_there["n"]) != (len(written.numbers), written.numbers[-1]):
            return "changed"
        persisted = job.log_persisted_through if attempt == job.attempt else written.numbers[-1]
        LogArchive.objects.create(
            job=job, attempt=attempt, key=key, size=written.size, compressed_size=written.compressed_size,
            sha256=written.sha256, index_offset=written.index_offset, parts=len(written.numbers),
            beyond=[n for n in written.numbers if n > persisted], log_ended_at=written.ended_at, created_at=now)
        stored.delete()
    return "archived"


def expire(now: datetime | None = None) -> int:
    """Delete the objects of archived logs past their repository's retention; returns how many."""
    now = now or timezone.now()
    count = 0
    archives = (LogArchive.objects.filter(expired_at__isnull=True)
                .select_related("job__build__repository").order_by("log_ended_at"))
    for archive in archives.iterator(chunk_size=500):
        days = retention_days(archive.job.build.repository)
        if not days or archive.log_ended_at > now - timedelta(days=days):
            continue
        storage().delete(archive.key)  # deleting what is not there is no error
        LogArchive.objects.filter(pk=archive.pk, expired_at__isnull=True).update(expired_at=now)
        count += 1
    return count




# --- totals for staff ------------------------------------------------------------------------------


def totals(now: datetime | None = None) -> dict:
    now = now or timezone.now()
    live = LogPart.objects.aggregate(parts=Count("id"), oldest=Min("created_at"))
    kept = LogArchive.objects.filter(expired_at__isnull=True).aggregate(
        objects=Count("id"), size=Sum("size"), compressed=Sum("compressed_size"), oldest=Min("log_ended_at"))
    backlog = due_current(now).aggregate(count=Count("id"), oldest=Min("finished_at"))
    oldest = min((t for t in (live["oldest"], kept["oldest"]) if t), default=None)
    return {
        "live_parts": live["parts"],
        "archived_objects": kept["objects"],
        "archived_bytes": kept["size"] or 0,
        "archived_compressed_bytes": kept["compressed"] or 0,
        "expired": LogArchive.objects.filter(expired_at__isnull=False).count(),
        "oldest_log": oldest,
        "backlog": backlog["count"] + due_earlier().count(),
        "backlog_oldest": backlog["oldest"],
        "problems": list(LogArchive.objects.exclude(problem="").order_by("-problem_at")
                         .values("job_id", "attempt", "problem", "problem_at")[:20]),
    }
