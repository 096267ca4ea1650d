"""The fleet of workers: heartbeat ingestion, what staff want of each queue, and housekeeping.

Heartbeats are ingested synchronously, unlike job reports: a heartbeat is one small upsert, its
response (desired version, drain) has to be read from the database anyway, and a fleet view that
lags behind a backed-up Celery queue would hide exactly the outage it is meant to show."""

from collections import defaultdict
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .events import announce_fleet
from .models import (
    IMAGE_PULL_ERROR,
    ErrorSignature,
    QueueSettings,
    Rollout,
    VersionSighting,
    Worker,
    WorkerError,
    WorkerState,
    error_signature,
)


def _locked_worker(name: str, beat: dict, now: datetime) -> Worker:
    worker = Worker.objects.select_for_update().filter(name=name).first()
    if worker is not None:
        return worker
    try:
        with transaction.atomic():  # a savepoint: two first heartbeats of one worker may race
            Worker.objects.create(name=name, queue=beat["queue"], version=beat["version"], state=beat["state"],
                                  first_seen_at=now, last_seen_at=now, state_since=now)
    except IntegrityError:
        pass
    return Worker.objects.select_for_update().get(name=name)


def _record_errors(worker: Worker, errors: list[dict], now: datetime) -> int:
    """Store a heartbeat's errors under their signatures; returns how many were new."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for error in errors:
        at = min(error["at"], now)  # a worker clock running ahead must not put errors in the future
        grouped[error_signature(error["message"])].append({"at": at, "message": error["message"][:2000]})
    fresh_total = 0
    for signature, items in grouped.items():
        digest = ErrorSignature.digest_of(signature)
        first = min(i["at"] for i in items)
        try:
            with transaction.atomic():
                ErrorSignature.objects.get_or_create(queue=worker.queue, digest=digest, defaults={
                    "signature": signature, "first_seen_at": first, "last_seen_at": first})
        except IntegrityError:
            pass  # created by a concurrent heartbeat; locked below
        group = ErrorSignature.objects.select_for_update().get(queue=worker.queue, digest=digest)
        known = set(WorkerError.objects.filter(worker=worker, signature=group, at__in=[i["at"] for i in items])
                    .values_list("at", flat=True))
        fresh = {}
        for item in items:
            if item["at"] not in known:
                fresh.setdefault(item["at"], item)
        if not fresh:
            continue
        WorkerError.objects.bulk_create(
            [WorkerError(signature=group, worker=worker, at=i["at"], message=i["message"]) for i in fresh.values()],
            ignore_conflicts=True)
        group.count += len(fresh)
        group.first_seen_at = min(group.first_seen_at, *fresh)
        group.last_seen_at = max(group.last_seen_at, *fresh)
        samples = group.samples + [{"at": i["at"].isoformat(), "worker": worker.name, "message": i["message"][:500]}
                                   for i in fresh.values()]
        group.samples = sorted(samples, key=lambda s: s["at"], reverse=True)[: ErrorSignature.MAX_SAMPLES]
        group.save()
        fresh_total += len(fresh)
    return fresh_total


# --- what heartbeats see of a rollout (fleet/rollouts.py) ----------------------------------------------


def queue_instances(queue: str, now: datetime) -> list[str]:
    """The instances a rollout of the queue divides into stages: not stopped and heard from lately."""
    return list(Worker.objects.filter(queue=queue).recent(now).exclude(state=WorkerState.STOPPED)
                .values_list("name", flat=True))


def desired_version_for(worker: Worker, queue_settings: QueueSettings, now: datetime) -> str | None:
    """What the heartbeat answer tells this instance to run: the plan's choice while a rollout is active."""
    rollout = Rollout.objects.active().filter(queue=worker.queue).first()
    if rollout is None:
        return queue_settings.desired_version or None
    if worker.name in rollout.chosen(queue_instances(worker.queue, now)):
        return rollout.version
    return rollout.previous_version


def sighting_record(*, worker: Worker, errors: list[dict], now: datetime) -> None:
    """Remember that the worker's version served, or failed to pull its image (for preflight)."""
    pull_errors = [e for e in errors if IMAGE_PULL_ERROR.search(e["message"])]
    if worker.state != WorkerState.IN_SERVICE and not pull_errors:
        return
    changes: dict = {}
    if worker.image:
        changes["image"] = worker.image
    if worker.state == WorkerState.IN_SERVICE:
        changes["last_in_service_at"] = now
    if pull_errors:
        latest = max(pull_errors, key=lambda e: e["at"])
        changes.update(last_pull_error_at=min(latest["at"], now), last_pull_error=latest["message"][:500])
    if not VersionSighting.objects.filter(queue=worker.queue, version=worker.version).update(**changes):
        try:
            with transaction.atomic():
                VersionSighting.objects.create(queue=worker.queue, version=worker.version, **changes)
        except IntegrityError:  # a concurrent first heartbeat of the version created it
            VersionSighting.objects.filter(queue=worker.queue, version=worker.version).update(**changes)


@transaction.atomic
def worker_heartbeat(*, name: str, beat: dict, errors: list[dict], now: datetime | None = None) -> dict:
    """Record one heartbeat; returns what the worker should do: {desired_version, drain}."""
    now = now or timezone.now()
    worker = _locked_worker(name, beat, now)
    changed, version_change = worker.apply_heartbeat(beat, now)
    new_errors = _record_errors(worker, errors, now) if errors else 0
    if changed or new_errors:
        announce_fleet("heartbeat", worker=worker.name, seq=worker.seq)
    sighting_record(worker=worker, errors=errors, now=now)
    queue = QueueSettings.for_queue(worker.queue)
    return {"desired_version": desired_version_for(worker, queue, now), "drain": queue.drain_for(worker)}


@transaction.atomic
def queue_settings_update(*, queue: str, user, now: datetime | None = None, **changes) -> QueueSettings:
    """Change what staff want of a queue (desired_version, expected_capacity, drain)."""
    now = now or timezone.now()
    row = QueueSettings.objects.select_for_update().filter(queue=queue).first() or QueueSettings(queue=queue)
    if "desired_version" in changes and changes["desired_version"] != row.desired_version:
        # The alert about an unmet desired version counts its grace period from here.
        row.desired_version_set_at = now
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_at, row.updated_by = now, user
    row.save()
    announce_fleet("settings", queue=queue)
    return row


@transaction.atomic
def worker_drain_set(*, worker: Worker, drain: bool) -> None:
    Worker.objects.filter(pk=worker.pk).update(drain_requested=drain)
    announce_fleet("drain", worker=worker.name)


@transaction.atomic
def queue_drain_other_versions(*, queue: str, now: datetime | None = None) -> int:
    """Ask every live instance of a queue not on its desired version to drain; returns how many."""
    now = now or timezone.now()
    wanted = QueueSettings.for_queue(queue).desired_version
    if not wanted:
        return 0
    count = (Worker.objects.alive(now).filter(queue=queue).exclude(version=wanted)
             .exclude(state=WorkerState.STOPPED).update(drain_requested=True))
    announce_fleet("drain", queue=queue)
    return count


# --- housekeeping ---------------------------------------------------------------------------------


def fleet_prune(*, now: datetime) -> int:
    """Forget error occurrences past retention; signatures keep their totals. Returns rows deleted."""
    cutoff = now - timedelta(days=settings.FLEET_ERROR_RETENTION_DAYS)
    deleted, _ = WorkerError.objects.filter(at__lt=cutoff).delete()
    return deleted
