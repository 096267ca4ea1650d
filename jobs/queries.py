"""Facts about jobs that other apps may read (the fleet's alert rules, its queue names): plain data, never
querysets.

This is the one door into job rows for reading from outside jobs/; changes go through jobs.services."""

from datetime import datetime

from django.db.models import Count, Min, Q

from .models import DEFAULT_QUEUE, DeadLetter, Job
from .states import JobState

FAILED = (JobState.FAILED, JobState.ERRORED)
DECIDED = (JobState.PASSED, JobState.FAILED, JobState.ERRORED)  # canceled says nothing about a worker
WAITING = (JobState.CREATED, JobState.QUEUED)


def job_sample(job: Job) -> dict:
    """What an alert's evidence shows of one job."""
    return {"id": job.pk, "url": job.get_absolute_url(), "state": job.state, "exit_code": job.exit_code,
            "worker": job.worker, "worker_version": job.worker_version,
            "finished_at": job.finished_at.isoformat() if job.finished_at else None,
            "queued_at": job.queued_at.isoformat(), "error_reason": job.error_reason}


def queue_names() -> set[str]:
    """The default queue and every queue a job was ever sent to."""
    return {DEFAULT_QUEUE} | set(Job.objects.values_list("queue", flat=True).distinct())


def inconsistent_jobs_by_version(*, since: datetime, until: datetime, min_count: int, samples: int) -> list[dict]:
    """Per queue and worker version with at least `min_count` finished jobs in the window whose state
    contradicts the exit code: {queue, worker_version, inconsistent, finished, onset, jobs}."""
    finished = Job.objects.filter(finished_at__gte=since, finished_at__lte=until)
    groups = (finished.values("queue", "worker_version")
              .annotate(bad=Count("id", filter=Q(inconsistent=True)), total=Count("id"),
                        onset=Min("finished_at", filter=Q(inconsistent=True)))
              .filter(bad__gte=min_count))
    result = []
    for g in groups:
        bad = finished.filter(queue=g["queue"], worker_version=g["worker_version"], inconsistent=True)
        result.append({"queue": g["queue"], "worker_version": g["worker_version"], "inconsistent": g["bad"],
                       "finished": g["total"], "onset": g["onset"],
                       "jobs": [job_sample(j) for j in bad.order_by("-finished_at")[:samples]]})
    return result


def decided_jobs_by_version(*, since: datetime, until: datetime) -> dict[tuple[str, str], tuple[int, int]]:
    """(failed or errored, passed/failed/errored) jobs finished in the window per (queue, worker version),
    for jobs whose worker version is known."""
    rows = (Job.objects.filter(state__in=DECIDED, finished_at__gte=since, finished_at__lte=until)
            .exclude(worker_version="").values("queue", "worker_version")
            .annotate(n=Count("id"), f=Count("id", filter=Q(state__in=FAILED))))
    return {(r["queue"], r["worker_version"]): (r["f"], r["n"]) for r in rows}


def failed_jobs_of_version(*, queue: str, worker_version: str, since: datetime, until: datetime,
                           samples: int) -> tuple[datetime | None, list[dict]]:
    """When the version's first failed or errored job in the window finished, and the latest few."""
    failed = Job.objects.filter(queue=queue, worker_version=worker_version, state__in=FAILED,
                                finished_at__gte=since, finished_at__lte=until)
    onset = failed.aggregate(first=Min("finished_at"))["first"]
    return onset, [job_sample(j) for j in failed.order_by("-finished_at")[:samples]]


def queued_jobs_by_queue(*, queued_before: datetime, min_count: int, samples: int) -> list[dict]:
    """Per queue with at least `min_count` jobs still waiting for a worker since before `queued_before`:
    {queue, count, oldest (queued_at), jobs (the longest waiting)}."""
    waiting = Job.objects.filter(state__in=WAITING, queued_at__lt=queued_before)
    groups = waiting.values("queue").annotate(n=Count("id"), oldest=Min("queued_at")).filter(n__gte=min_count)
    return [{"queue": g["queue"], "count": g["n"], "oldest": g["oldest"],
             "jobs": [job_sample(j) for j in waiting.filter(queue=g["queue"]).order_by("queued_at")[:samples]]}
            for g in groups]


def stale_errored_jobs_by_queue(*, since: datetime, until: datetime, min_count: int, samples: int) -> list[dict]:
    """Per queue with at least `min_count` jobs that buildboard errored (an `error_reason` is set) in the
    window: {queue, count, first_activity (the earliest last activity), workers ({name: jobs}), jobs}."""
    swept = (Job.objects.filter(state=JobState.ERRORED, finished_at__gte=since, finished_at__lte=until)
             .exclude(error_reason=""))
    groups = swept.values("queue").annotate(n=Count("id"), first=Min("last_activity_at")).filter(n__gte=min_count)
    result = []
    for g in groups:
        of_queue = swept.filter(queue=g["queue"])
        workers: dict[str, int] = {}
        for row in of_queue.values("worker").annotate(n=Count("id")).order_by("-n", "worker")[:samples]:
            workers[row["worker"]] = row["n"]
        result.append({"queue": g["queue"], "count": g["n"], "first_activity": g["first"], "workers": workers,
                       "jobs": [job_sample(j) for j in of_queue.order_by("-finished_at")[:samples]]})
    return result


def dead_letter_sample(letter: DeadLetter, job: Job | None) -> dict:
    return {"id": letter.pk, "job_id": letter.job_id, "url": job.get_absolute_url() if job else None,
            "queue": job.queue if job else "", "attempt": letter.attempt, "number": letter.number,
            "error": letter.error[:300], "payload": letter.payload_preview, "at": letter.created_at.isoformat(),
            "when": letter.created_at.strftime("%Y-%m-%d %H:%M:%S")}


def dead_letters(*, since: datetime | None = None, samples: int) -> dict:
    """Log parts set aside because they could not be stored (since a time, or all kept):
    {count, onset (the first one's time), latest (samples, newest first)}."""
    letters = DeadLetter.objects.all() if since is None else DeadLetter.objects.recent(since)
    count = letters.count()
    latest = list(letters.order_by("-created_at", "-id")[:samples])
    jobs = Job.objects.in_bulk({d.job_id for d in latest})
    onset = letters.aggregate(first=Min("created_at"))["first"] if count else None
    return {"count": count, "onset": onset, "latest": [dead_letter_sample(d, jobs.get(d.job_id)) for d in latest]}


def dead_letters_by_queue(*, since: datetime, min_count: int, samples: int) -> list[dict]:
    """Per queue of the jobs concerned, with at least `min_count` parts set aside since `since`:
    {queue, count, onset, latest}. Parts of jobs that no longer exist count under the queue ''."""
    letters = list(DeadLetter.objects.recent(since).order_by("-created_at", "-id"))
    jobs = Job.objects.in_bulk({d.job_id for d in letters})
    by_queue: dict[str, list[DeadLetter]] = {}
    for letter in letters:
        job = jobs.get(letter.job_id)
        by_queue.setdefault(job.queue if job else "", []).append(letter)
    return [{"queue": queue, "count": len(group), "onset": group[-1].created_at,
             "latest": [dead_letter_sample(d, jobs.get(d.job_id)) for d in group[:samples]]}
            for queue, group in sorted(by_queue.items()) if len(group) >= min_count]


def log_storage_totals(*, now: datetime | None = None) -> dict:
    """Where logs live, for staff: live parts in the database, archived objects and bytes, the oldest log,
    the archive backlog (finished attempts still waiting to move, the oldest finish among them) and the
    archives readers found missing or corrupt."""
    from . import archiving

    return archiving.totals(now)
