"""The fleet of workers: heartbeat ingestion, the per-queue picture staff see, and sweeping stale jobs.

Heartbeats are ingested synchronously, unlike job reports: a heartbeat is one small upsert, its
response (desired version, drain) has to be read from the database anyway, and a fleet view that
lags behind a backed-up Celery queue would hide exactly the outage it is meant to show."""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.utils import timezone

from . import events, services
from .models import (
    ErrorSignature,
    Job,
    QueueSettings,
    Worker,
    WorkerError,
    WorkerState,
    error_signature,
)
from .states import JobState

FLEET_GROUP = "fleet"


def announce_fleet(reason: str, **details) -> None:
    """Ring the fleet page's doorbell after commit; the page refetches its fragment from the database."""
    events.announce_on_commit([FLEET_GROUP], {"type": "fleet.changed", "reason": reason, **details})


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


@transaction.atomic
def worker_heartbeat(*, name: str, beat: dict, errors: list[dict], now: datetime | None = None) -> dict:
    """Record one heartbeat; returns what the worker should do: {desired_version, drain}."""
    now = now or timezone.now()
    worker = _locked_worker(name, beat, now)
    changed, version_change = worker.apply_heartbeat(beat, now)
    new_errors = _record_errors(worker, errors, now) if errors else 0
    if changed or new_errors:
        announce_fleet("heartbeat", worker=worker.name, seq=worker.seq)
    queue = QueueSettings.for_queue(worker.queue)
    return {"desired_version": queue.desired_version or None, "drain": queue.drain_for(worker)}


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


# --- the picture on the fleet page ----------------------------------------------------------------


@dataclass
class VersionRow:
    version: str
    states: Counter = field(default_factory=Counter)
    capacity: int = 0
    busy: int = 0
    silent: int = 0

    @property
    def in_service(self) -> int:
        return self.states[WorkerState.IN_SERVICE]


@dataclass
class QueueView:
    queue: str
    settings: QueueSettings
    workers: list[Worker]
    versions: list[VersionRow]
    capacity: int
    busy: int
    silent: list[Worker]
    stuck: list[Worker]
    errors: list[ErrorSignature]  # each with .recent_count: occurrences within the error window

    @property
    def desired_in_service(self) -> int:
        wanted = self.settings.desired_version
        return sum(v.in_service for v in self.versions if v.version == wanted) if wanted else 0

    @property
    def in_service(self) -> int:
        return sum(v.in_service for v in self.versions)

    @property
    def capacity_short(self) -> bool:
        return bool(self.settings.expected_capacity) and self.capacity < self.settings.expected_capacity

    @property
    def busy_percent(self) -> int:
        return round(100 * self.busy / self.capacity) if self.capacity else 0


def fleet_overview(*, now: datetime, starting_minutes: float, error_window_minutes: float = 60) -> list[QueueView]:
    """Every queue with a recent worker or staff settings, as the fleet page shows it."""
    workers = list(Worker.objects.recent(now).order_by("queue", "version", "name"))
    by_queue: dict[str, list[Worker]] = defaultdict(list)
    for w in workers:
        by_queue[w.queue].append(w)
    queue_rows = {q.queue: q for q in QueueSettings.objects.all()}
    error_cutoff = now - timedelta(hours=settings.FLEET_FORGET_AFTER_HOURS)
    errors_by_queue: dict[str, list[ErrorSignature]] = defaultdict(list)
    recent = _count_by_signature(now - timedelta(minutes=error_window_minutes))
    for sig in ErrorSignature.objects.filter(last_seen_at__gte=error_cutoff).order_by("-last_seen_at"):
        sig.recent_count = recent.get(sig.pk, 0)
        errors_by_queue[sig.queue].append(sig)
    views = []
    for queue in sorted(set(by_queue) | set(queue_rows)):
        rows: dict[str, VersionRow] = {}
        capacity = busy = 0
        silent, stuck = [], []
        for w in by_queue.get(queue, []):
            row = rows.setdefault(w.version, VersionRow(w.version))
            if w.is_silent(now):
                row.silent += 1
                silent.append(w)
                continue
            row.states[w.state] += 1
            if w.state == WorkerState.IN_SERVICE:
                row.capacity += w.pool_size
                row.busy += w.busy
                capacity += w.pool_size
                busy += w.busy
            if w.is_stuck_starting(now, starting_minutes):
                stuck.append(w)
        views.append(QueueView(
            queue=queue, settings=queue_rows.get(queue) or QueueSettings(queue=queue),
            workers=by_queue.get(queue, []), versions=sorted(rows.values(), key=lambda r: r.version),
            capacity=capacity, busy=busy, silent=silent, stuck=stuck,
            errors=errors_by_queue.get(queue, [])[:20],
        ))
    return views


def _count_by_signature(since: datetime) -> dict[int, int]:
    rows = WorkerError.objects.filter(at__gte=since).values("signature_id").annotate(n=Count("id"))
    return {r["signature_id"]: r["n"] for r in rows}


# --- housekeeping ---------------------------------------------------------------------------------


def stale_jobs_error(*, now: datetime, minutes: float, limit: int = 500) -> list[int]:
    """Error running jobs without any state or log activity for `minutes`; returns their ids.

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
            services.build_refresh(build_id=job.build_id)
            errored.append(job_id)
    return errored


def fleet_prune(*, now: datetime) -> int:
    """Forget error occurrences past retention; signatures keep their totals. Returns rows deleted."""
    cutoff = now - timedelta(days=settings.FLEET_ERROR_RETENTION_DAYS)
    deleted, _ = WorkerError.objects.filter(at__lt=cutoff).delete()
    return deleted
