"""The picture on the fleet page: per queue, instances by version and state, capacity, silent and stuck
instances, and recent error signatures."""

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db.models import Count

from .models import ErrorSignature, QueueSettings, Worker, WorkerError, WorkerState


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
