"""Workflows that touch a job and its build together and announce the result."""

from datetime import datetime, timedelta

from django.db import transaction

from accounts import audit

from . import events
from .models import Build, Job
from .states import ACTIVE_STATES, FINAL_STATES, JobState

RESTARTABLE_FAILURES = (JobState.FAILED, JobState.ERRORED, JobState.CANCELED)


def build_refresh(*, build_id: int) -> None:
    """Recompute a build's state from its jobs; call inside the transaction that changed them."""
    build = Build.objects.select_for_update().select_related("repository").get(pk=build_id)
    if build.refresh_state():
        events.announce_build(build)


@transaction.atomic
def job_restart(*, job: Job, actor=None) -> bool:
    """Start the next attempt of a finished job; False if it has not finished. `actor`: a user or token."""
    if not job.restart():
        return False
    _audit(actor, "job.restart", job)
    events.announce_job(job)
    build_refresh(build_id=job.build_id)
    return True


@transaction.atomic
def job_cancel(*, job: Job, actor=None) -> bool:
    """Flag a running job for cancellation; the worker learns it from its next API response."""
    if not job.request_cancel():
        return False
    _audit(actor, "job.cancel", job)
    events.announce_job(job)
    return True


def jobs_error_stale(*, now: datetime, minutes: float, limit: int = 500) -> list[int]:
    """Error running jobs without any state or log activity for `minutes`, saying why; returns their ids.

    Each job is re-checked under its row lock, so a report that arrives meanwhile wins."""
    cutoff = now - timedelta(minutes=minutes)
    running = (JobState.RECEIVED, JobState.STARTED)
    candidates = list(Job.objects.filter(state__in=running, last_activity_at__lt=cutoff)
                      .order_by("last_activity_at").values_list("pk", flat=True)[:limit])
    errored = []
    for job_id in candidates:
        with transaction.atomic():
            job = Job.objects.select_for_update().filter(pk=job_id, state__in=running,
                                                         last_activity_at__lt=cutoff).first()
            if job is None:
                continue
            job.error_reason = (f"No state or log activity for {minutes:g} minutes "
                                f"(last at {job.last_activity_at:%Y-%m-%d %H:%M:%S} UTC); errored by buildboard.")
            job.state, job.finished_at = JobState.ERRORED, now
            job.seq += 1
            job.save(update_fields=["state", "finished_at", "error_reason", "seq"])
            events.announce_job(job)
            build_refresh(build_id=job.build_id)
            errored.append(job_id)
    return errored


def _audit(actor, action: str, job: Job) -> None:
    repository = Job.objects.filter(pk=job.pk).values_list("build__repository__owner", "build__repository__name",
                                                           "number", "attempt").get()
    owner, name, number, attempt = repository
    audit.record(actor, action, organization=owner, target=f"{owner}/{name} job {number} (#{job.pk})",
                 detail=f"attempt {attempt}")


@transaction.atomic
def build_restart(*, build: Build, only_failed: bool = False, actor=None) -> int:
    """Start the next attempt of the build's finished jobs (or only of those that failed, errored or
    were canceled); returns how many jobs were restarted. Each restart is audited like a job's own."""
    states = RESTARTABLE_FAILURES if only_failed else FINAL_STATES
    restarted = 0
    for job in Job.objects.select_for_update().filter(build=build, state__in=states).order_by("id"):
        if job.restart():
            _audit(actor, "job.restart", job)
            events.announce_job(job)
            restarted += 1
    if restarted:
        build_refresh(build_id=build.pk)
    return restarted


@transaction.atomic
def build_cancel(*, build: Build, actor=None) -> int:
    """Ask every running or queued job of the build to stop; returns how many were asked."""
    canceled = 0
    for job in Job.objects.select_for_update().filter(build=build, state__in=ACTIVE_STATES).order_by("id"):
        if job.request_cancel():
            _audit(actor, "job.cancel", job)
            events.announce_job(job)
            canceled += 1
    return canceled
