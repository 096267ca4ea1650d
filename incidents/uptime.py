"""90-day uptime bars from the component status history.

A day's colour comes from its worst status and how many minutes it lasted; uptime counts a major
outage fully and a partial outage at 30%, as Statuspage does. Days before a component existed
have no data and do not count."""

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from django.utils import timezone

from .models import SEVERITY, Component, ComponentStatus, ComponentStatusChange, Incident

DAYS = 90
PARTIAL_WEIGHT = 0.3
# Shorter than this, a day is shown one shade lighter than its worst status.
BRIEF_MINUTES = 60
LABELS = dict(ComponentStatus.choices)


@dataclass
class Day:
    date: date
    level: str  # ok, maintenance, degraded, partial, major, nodata
    minutes: dict[str, int] = field(default_factory=dict)  # non-operational status -> minutes
    incidents: list[Incident] = field(default_factory=list)

    @property
    def summary(self) -> str:
        if self.level == "nodata":
            return "No data"
        if not self.minutes:
            return "No downtime"
        parts = []
        for status, minutes in sorted(self.minutes.items(), key=lambda kv: -SEVERITY[ComponentStatus(kv[0])]):
            hours, mins = divmod(minutes, 60)
            span = f"{hours} h {mins} min" if hours else f"{mins} min"
            parts.append(f"{LABELS[status]} {span}")
        return "; ".join(parts)


@dataclass
class Uptime:
    days: list[Day]
    percent: float | None
    covered_days: int = 0  # days with data: the percentage says nothing about the others


def _segments(component: Component, changes: list[ComponentStatusChange], start: datetime,
              end: datetime) -> list[tuple[datetime, datetime, str]]:
    """(from, to, status) covering [max(start, creation), end)."""
    born = component.created_at
    if component.start_date:
        born = min(born, datetime.combine(component.start_date, datetime.min.time(), UTC))
    if changes and changes[0].at < born:
        born = changes[0].at
    before = [c for c in changes if c.at <= start]
    if before:
        status = before[-1].new_status
    elif changes:
        status = changes[0].old_status or changes[0].new_status
    else:
        status = component.status
    cursor = max(start, born)
    segments = []
    for change in changes:
        if change.at <= cursor:
            continue
        if change.at >= end:
            break
        segments.append((cursor, change.at, status))
        cursor, status = change.at, change.new_status
    if cursor < end:
        segments.append((cursor, end, status))
    return segments


def _level(minutes: dict[str, int]) -> str:
    if not minutes:
        return "ok"
    worst = max(minutes, key=lambda s: SEVERITY[ComponentStatus(s)])
    brief = minutes[worst] < BRIEF_MINUTES
    if worst == ComponentStatus.MAJOR_OUTAGE:
        return "partial" if brief else "major"
    if worst == ComponentStatus.PARTIAL_OUTAGE:
        return "degraded" if brief else "partial"
    if worst == ComponentStatus.DEGRADED_PERFORMANCE:
        return "degraded"
    return "maintenance"


def uptime_for(components: list[Component], incidents: list[Incident], *, now: datetime | None = None,
               days: int = DAYS) -> dict[int, Uptime]:
    """Uptime of each component over the `days` UTC days ending today; keyed by component id."""
    now = now or timezone.now()
    today = now.astimezone(UTC).date()
    first_day = today - timedelta(days=days - 1)
    start = datetime.combine(first_day, datetime.min.time(), UTC)
    ids = [c.pk for c in components]
    history: dict[int, list[ComponentStatusChange]] = {pk: [] for pk in ids}
    # Changes inside the window, plus the last one before it (the status the window starts in).
    for change in ComponentStatusChange.objects.filter(component_id__in=ids, at__gte=start, at__lt=now):
        history[change.component_id].append(change)
    for pk in ids:
        last = ComponentStatusChange.objects.filter(component_id=pk, at__lt=start).order_by("-at", "-id").first()
        if last:
            history[pk].insert(0, last)
    affecting: dict[int, list[Incident]] = {pk: [] for pk in ids}
    for incident in incidents:
        for c in incident.components.all():
            if c.pk in affecting:
                affecting[c.pk].append(incident)
    result = {}
    for component in components:
        segments = _segments(component, history[component.pk], start, now)
        bars, known, lost, covered = [], 0.0, 0.0, 0
        for offset in range(days):
            day = first_day + timedelta(days=offset)
            day_start = datetime.combine(day, datetime.min.time(), UTC)
            day_end = min(day_start + timedelta(days=1), now)
            seconds: dict[str, float] = {}
            for seg_from, seg_to, status in segments:
                overlap = (min(seg_to, day_end) - max(seg_from, day_start)).total_seconds()
                if overlap > 0:
                    seconds[status] = seconds.get(status, 0) + overlap
            day_incidents = [i for i in affecting[component.pk]
                             if i.started_at < day_end and (i.resolved_at or now) >= day_start]
            if not seconds:
                bars.append(Day(day, "nodata", incidents=day_incidents))
                continue
            covered += 1
            known += sum(seconds.values())
            lost += seconds.get(ComponentStatus.MAJOR_OUTAGE, 0) + PARTIAL_WEIGHT * seconds.get(
                ComponentStatus.PARTIAL_OUTAGE, 0)
            minutes = {s: max(1, round(v / 60)) for s, v in seconds.items() if s != ComponentStatus.OPERATIONAL}
            bars.append(Day(day, _level(minutes), minutes, day_incidents))
        percent = round(100 * (1 - lost / known), 2) if known else None
        result[component.pk] = Uptime(bars, percent, covered)
    return result
