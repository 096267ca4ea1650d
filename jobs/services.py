"""Workflows that touch a job and its build together and announce the result."""

from django.db import transaction

from . import events
from .models import Build, Job


def build_refresh(*, build_id: int) -> None:
    """Recompute a build's state from its jobs; call inside the transaction that changed them."""
    build = Build.objects.select_for_update().select_related("repository").get(pk=build_id)
    if build.refresh_state():
        events.announce_build(build)


@transaction.atomic
def job_restart(*, job: Job) -> bool:
    """Start the next attempt of a finished job; False if it has not finished."""
    if not job.restart():
        return False
    events.announce_job(job)
    build_refresh(build_id=job.build_id)
    return True


@transaction.atomic
def job_cancel(*, job: Job) -> bool:
    """Flag a running job for cancellation; the worker learns it from its next API response."""
    if not job.request_cancel():
        return False
    events.announce_job(job)
    return True
