"""Alert rules over jobs and the fleet, and the alert lifecycle: firing → acknowledged → resolved.

Each rule looks at the database as of `now` and returns findings, one per subject (a queue, a queue's
worker version, an error signature). Evaluation raises an alert for a new finding, refreshes the
evidence of an open one, and resolves an open alert once its condition has stayed clear for the rule's
`clear_minutes`; it returns what fired and what resolved, and the task layer (fleet/tasks.py) sends the
notifications. Every function takes `now`, so scenarios can replay time. Job facts come from
jobs.queries, and stale jobs are errored through jobs.services."""

import logging
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Min
from django.utils import timezone

from jobs import queries as job_queries
from jobs.services import jobs_error_stale

from .events import announce_fleet
from .models import Alert, AlertRule, ErrorSignature, QueueSettings, Worker, WorkerError, WorkerState

log = logging.getLogger(__name__)

SAMPLES = 10


@dataclass(frozen=True)
class Param:
    name: str
    default: float
    label: str
    minimum: float = 0
    maximum: float | None = None
    integer: bool = True

    def clean(self, raw: str) -> float | int:
        """Parse a staff-entered value; raises ValueError with a message fit to show."""
        try:
            value = int(raw) if self.integer else float(raw)
        except (TypeError, ValueError):
            raise ValueError(f"{self.label}: enter {'a whole number' if self.integer else 'a number'}") from None
        if not math.isfinite(value) or value < self.minimum or (self.maximum is not None and value > self.maximum):
            top = f" and at most {self.maximum:g}" if self.maximum is not None else ""
            raise ValueError(f"{self.label}: must be at least {self.minimum:g}{top}")
        return value


CLEAR = Param("clear_minutes", 5, "Resolve after the condition has been clear for (minutes)", 0, 1440)


@dataclass(frozen=True)
class Scope:
    """Narrows a rule to one queue's new `version` against its `reference` version, over jobs, errors and
    instances since `since`: how a rollout gates on the same rules that watch the whole fleet."""

    queue: str
    version: str
    reference: str
    since: datetime

    def window_start(self, since: datetime) -> datetime:
        return max(since, self.since)


@dataclass
class Finding:
    subject: str
    title: str
    summary: str
    queue: str
    evidence: dict = field(default_factory=dict)
    onset_at: datetime | None = None


class Rule:
    kind = ""
    label = ""
    description = ""
    public_message = "We are investigating a problem with builds on {queue}."
    params: tuple[Param, ...] = ()

    def all_params(self) -> tuple[Param, ...]:
        return (*self.params, CLEAR)

    def evaluate(self, p: dict, now: datetime, scope: Scope | None = None) -> list[Finding]:
        """Findings as of `now`; with a scope (GATE_RULES only), those about the scope's version or queue."""
        raise NotImplementedError


def _worker_sample(w: Worker, now: datetime) -> dict:
    return {"name": w.name, "version": w.version, "state": w.state, "host": w.host, "pool_size": w.pool_size,
            "busy": w.busy, "state_since": w.state_since.isoformat(), "last_seen_at": w.last_seen_at.isoformat(),
            "minutes_in_state": round((now - w.state_since).total_seconds() / 60, 1)}


def _recent_errors(queue: str, now: datetime, minutes: float = 60, limit: int = 5) -> list[dict]:
    """The queue's most frequent error signatures lately: the likely cause behind a fleet symptom."""
    since = now - timedelta(minutes=minutes)
    rows = (WorkerError.objects.filter(signature__queue=queue, at__gte=since).values("signature_id")
            .annotate(n=Count("id")).order_by("-n")[:limit])
    sigs = ErrorSignature.objects.in_bulk([r["signature_id"] for r in rows])
    return [{"signature": sigs[r["signature_id"]].signature, "count_in_window": r["n"],
             "total": sigs[r["signature_id"]].count, "sample": (sigs[r["signature_id"]].samples or [{}])[0]}
            for r in rows]


class InconsistentJobs(Rule):
    kind = "inconsistent_jobs"
    label = "Job state contradicts exit code"
    description = ("Finished jobs whose state and exit code disagree (failed with exit 0, passed with a "
                   "non-zero exit), counted per queue and worker version.")
    public_message = ("Some jobs on {queue} are being reported with a result that does not match their exit "
                      "code. We are investigating; affected builds can be restarted.")
    params = (Param("window_minutes", 60, "Window (minutes)", 1, 10080),
              Param("min_jobs", 3, "Fire at this many inconsistent jobs", 1))

    def evaluate(self, p: dict, now: datetime, scope: Scope | None = None) -> list[Finding]:
        since = now - timedelta(minutes=p["window_minutes"])
        if scope:
            since = scope.window_start(since)
        groups = job_queries.inconsistent_jobs_by_version(since=since, until=now, min_count=p["min_jobs"],
                                                          samples=SAMPLES)
        findings = []
        for g in groups:
            if scope and (g["queue"], g["worker_version"]) != (scope.queue, scope.version):
                continue
            queue, version = g["queue"], g["worker_version"] or "(unknown)"
            findings.append(Finding(
                subject=f"{queue}@{version}", queue=queue, onset_at=g["onset"],
                title=(f"{g['inconsistent']} jobs on {queue} {version} finished with a state that contradicts "
                       "the exit code"),
                summary=(f"In the last {p['window_minutes']:g} minutes, {g['inconsistent']} of {g['finished']} "
                         f"finished jobs run by worker version {version} on {queue} have a state that disagrees "
                         "with their exit code (e.g. failed although the script exited 0)."),
                evidence={"queue": queue, "worker_version": version, "inconsistent": g["inconsistent"],
                          "finished": g["finished"], "window_minutes": p["window_minutes"], "jobs": g["jobs"]},
            ))
        return findings


def failure_rate_test(failed: int, total: int, ref_failed: int, ref_total: int) -> tuple[float, float]:
    """One-sided two-proportion z-test that the first rate exceeds the reference: (z, p-value)."""
    if total == 0 or ref_total == 0:
        return 0.0, 1.0
    pooled = (failed + ref_failed) / (total + ref_total)
    se = math.sqrt(pooled * (1 - pooled) * (1 / total + 1 / ref_total))
    if se == 0:
        return 0.0, 1.0
    z = (failed / total - ref_failed / ref_total) / se
    return z, 0.5 * math.erfc(z / math.sqrt(2))


class VersionFailureRate(Rule):
    kind = "version_failure_rate"
    label = "Worker version fails more than the rest of its queue"
    description = ("Per queue, each worker version's share of failed or errored jobs over the window is tested "
                   "against the other versions of the queue (one-sided two-proportion z-test). When the other "
                   "versions ran too few jobs in the window, their jobs over the baseline period are used. Quiet "
                   "until both sides reach the minimum counts.")
    public_message = "Some jobs on {queue} are failing unexpectedly. We are investigating."
    params = (Param("window_minutes", 60, "Window (minutes)", 1, 10080),
              Param("min_jobs", 20, "Minimum finished jobs on each side", 5),
              Param("min_failures", 5, "Minimum failures of the version", 1),
              Param("max_p_value", 0.001, "Significance: fire when p is below", 1e-12, 0.2, integer=False),
              Param("min_difference_pct", 5, "And the rates differ by at least (percentage points)", 0, 100,
                    integer=False),
              Param("baseline_hours", 24, "Baseline period for the reference (hours)", 1, 720))

    def evaluate(self, p: dict, now: datetime, scope: Scope | None = None) -> list[Finding]:
        since = now - timedelta(minutes=p["window_minutes"])
        if scope:
            since = scope.window_start(since)
        baseline_since = now - timedelta(hours=p["baseline_hours"])
        window = job_queries.decided_jobs_by_version(since=since, until=now)
        baseline = None
        findings = []

        def compared(q: str, v2: str, version: str) -> bool:
            # The fleet-wide rule weighs a version against all others; a scoped one against its reference only.
            return q == scope.queue and v2 == scope.reference if scope else v2 != version

        what = f"{scope.reference} on" if scope else "other versions of"
        for (queue, version), (failed, total) in sorted(window.items()):
            if scope and (queue, version) != (scope.queue, scope.version):
                continue
            if total < p["min_jobs"] or failed < p["min_failures"]:
                continue
            others = [v for (q, v2), v in window.items() if q == queue and compared(q, v2, version)]
            ref_failed, ref_total = sum(v[0] for v in others), sum(v[1] for v in others)
            reference = f"{what} {queue} in the same {p['window_minutes']:g} minutes"
            if ref_total < p["min_jobs"]:
                if baseline is None:
                    baseline = job_queries.decided_jobs_by_version(since=baseline_since, until=now)
                others = [v for (q, v2), v in baseline.items() if q == queue and compared(q, v2, version)]
                ref_failed, ref_total = sum(v[0] for v in others), sum(v[1] for v in others)
                reference = f"{what} {queue} over the last {p['baseline_hours']:g} hours"
            if ref_total < p["min_jobs"]:
                continue
            z, p_value = failure_rate_test(failed, total, ref_failed, ref_total)
            rate, ref_rate = failed / total, ref_failed / ref_total
            if p_value >= p["max_p_value"] or (rate - ref_rate) * 100 < p["min_difference_pct"]:
                continue
            onset, samples = job_queries.failed_jobs_of_version(queue=queue, worker_version=version, since=since,
                                                                until=now, samples=SAMPLES)
            findings.append(Finding(
                subject=f"{queue}@{version}", queue=queue, onset_at=onset,
                title=f"{version} on {queue} fails {rate:.0%} of jobs against {ref_rate:.0%} for the rest",
                summary=(f"Worker version {version} failed {failed} of {total} jobs on {queue} in the last "
                         f"{p['window_minutes']:g} minutes ({rate:.1%}); {reference}: {ref_failed} of {ref_total} "
                         f"({ref_rate:.1%}). One-sided two-proportion z-test: z = {z:.2f}, p = {p_value:.2g}."),
                evidence={"queue": queue, "worker_version": version, "failed": failed, "finished": total,
                          "rate": round(rate, 4), "reference": reference, "reference_failed": ref_failed,
                          "reference_finished": ref_total, "reference_rate": round(ref_rate, 4),
                          "z": round(z, 3), "p_value": p_value, "window_minutes": p["window_minutes"],
                          "jobs": samples},
            ))
        return findings


class ErrorBurst(Rule):
    kind = "error_burst"
    label = "Burst of worker errors"
    description = "Many occurrences of one error signature (numbers, hashes, ids and tags stripped) in the window."
    public_message = "Some workers on {queue} are failing to start or run jobs; builds may start later than usual."
    params = (Param("window_minutes", 10, "Window (minutes)", 1, 1440),
              Param("min_count", 10, "Fire at this many occurrences", 1))

    def evaluate(self, p: dict, now: datetime, scope: Scope | None = None) -> list[Finding]:
        since = now - timedelta(minutes=p["window_minutes"])
        recent = WorkerError.objects.filter(at__gte=since, at__lte=now)
        if scope:
            recent = recent.filter(at__gte=scope.since, signature__queue=scope.queue, worker__version=scope.version)
        rows = (recent.values("signature_id").annotate(n=Count("id"), onset=Min("at"), last=Max("at"))
                .filter(n__gte=p["min_count"]))
        sigs = ErrorSignature.objects.in_bulk([r["signature_id"] for r in rows])
        findings = []
        for r in rows:
            sig = sigs[r["signature_id"]]
            hits = recent.filter(signature=sig).select_related("worker")
            workers = Counter(e.worker.name for e in hits)
            versions = Counter(e.worker.version for e in hits)
            findings.append(Finding(
                subject=f"{sig.queue}:{sig.digest[:16]}", queue=sig.queue, onset_at=r["onset"],
                title=f"{r['n']}× in {p['window_minutes']:g} min on {sig.queue}: {sig.signature[:120]}",
                summary=(f"The error \"{sig.signature}\" occurred {r['n']} times on {len(workers)} instance(s) of "
                         f"{sig.queue} in the last {p['window_minutes']:g} minutes ({sig.count} times since "
                         f"{sig.first_seen_at:%Y-%m-%d %H:%M} UTC)."),
                evidence={"queue": sig.queue, "signature": sig.signature, "count_in_window": r["n"],
                          "total": sig.count, "first_seen_at": sig.first_seen_at.isoformat(),
                          "last_seen_at": sig.last_seen_at.isoformat(), "window_minutes": p["window_minutes"],
                          "workers": dict(workers.most_common(SAMPLES)), "versions": dict(versions),
                          "samples": sig.samples},
            ))
        return findings


class StuckStarting(Rule):
    kind = "stuck_starting"
    label = "Instances not coming into service"
    description = "Live instances that have reported 'starting' for longer than the limit."
    public_message = "Some workers on {queue} are failing to come into service; builds may start later than usual."
    params = (Param("starting_minutes", 10, "Starting for longer than (minutes)", 1, 1440),
              Param("min_instances", 1, "Fire at this many instances", 1))

    def evaluate(self, p: dict, now: datetime, scope: Scope | None = None) -> list[Finding]:
        stuck: dict[str, list[Worker]] = defaultdict(list)
        candidates = Worker.objects.stuck_starting(now, p["starting_minutes"])
        if scope:
            candidates = candidates.filter(queue=scope.queue, version=scope.version)
        for w in candidates.order_by("state_since"):
            stuck[w.queue].append(w)
        findings = []
        for queue, workers in sorted(stuck.items()):
            if len(workers) < p["min_instances"]:
                continue
            versions = Counter(w.version for w in workers)
            findings.append(Finding(
                subject=queue, queue=queue, onset_at=workers[0].state_since,
                title=f"{len(workers)} instance(s) of {queue} stuck starting ({', '.join(sorted(versions))})",
                summary=(f"{len(workers)} live instance(s) of {queue} have been starting for more than "
                         f"{p['starting_minutes']:g} minutes; the longest since "
                         f"{workers[0].state_since:%H:%M} UTC."),
                evidence={"queue": queue, "instances": [_worker_sample(w, now) for w in workers[:SAMPLES]],
                          "count": len(workers), "versions": dict(versions),
                          "recent_errors": _recent_errors(queue, now)},
            ))
        return findings


class CapacityLow(Rule):
    kind = "capacity_low"
    label = "In-service capacity below expected"
    description = ("Job slots of live in-service instances below the queue's expected capacity (set on the "
                   "fleet page) times the given percentage.")
    public_message = "Build capacity on {queue} is reduced; builds may start later than usual."
    params = (Param("percent_of_expected", 100, "Fire below this % of the expected capacity", 1, 100),)

    def evaluate(self, p: dict, now: datetime, scope: Scope | None = None) -> list[Finding]:
        findings = []
        queues = QueueSettings.objects.filter(expected_capacity__gt=0)
        if scope:  # capacity belongs to the queue: a rollout that takes instances out of service lowers it
            queues = queues.filter(queue=scope.queue)
        for qs in queues:
            workers = list(Worker.objects.in_service(now).filter(queue=qs.queue))
            capacity = sum(w.pool_size for w in workers)
            if scope:  # instances restarting on the new version are on their way; the start gate times them
                capacity += sum(Worker.objects.alive(now).filter(queue=qs.queue, version=scope.version,
                                                                 state=WorkerState.STARTING)
                                .values_list("pool_size", flat=True))
            floor = qs.expected_capacity * p["percent_of_expected"] / 100
            if capacity >= floor:
                continue
            by_version = Counter()
            for w in workers:
                by_version[w.version] += w.pool_size
            silent = list(Worker.objects.silent(now).filter(queue=qs.queue).recent(now)[:SAMPLES])
            findings.append(Finding(
                subject=qs.queue, queue=qs.queue,
                title=f"{qs.queue} has {capacity} of {qs.expected_capacity} expected job slots in service",
                summary=(f"Live in-service instances of {qs.queue} offer {capacity} job slots "
                         f"({sum(w.busy for w in workers)} busy); staff expect {qs.expected_capacity}."),
                evidence={"queue": qs.queue, "capacity": capacity, "expected": qs.expected_capacity,
                          "busy": sum(w.busy for w in workers), "instances_in_service": len(workers),
                          "capacity_by_version": dict(by_version),
                          "silent_instances": [_worker_sample(w, now) for w in silent],
                          "recent_errors": _recent_errors(qs.queue, now)},
            ))
        return findings


class DesiredVersionMissing(Rule):
    kind = "desired_version_missing"
    label = "Desired version not in service"
    description = ("A queue's desired version (set on the fleet page) has had no live in-service instance for "
                   "longer than the grace period after it was set: a rollout or rollback that is not taking effect.")
    public_message = "A fix for builds on {queue} is taking longer than expected to roll out. We are working on it."
    params = (Param("grace_minutes", 15, "Grace period after setting the version (minutes)", 0, 1440),)

    def evaluate(self, p: dict, now: datetime, scope: Scope | None = None) -> list[Finding]:
        findings = []
        deadline = now - timedelta(minutes=p["grace_minutes"])
        for qs in QueueSettings.objects.exclude(desired_version="").filter(desired_version_set_at__lte=deadline):
            live = Worker.objects.alive(now).filter(queue=qs.queue)
            if live.filter(state__in=[WorkerState.IN_SERVICE], version=qs.desired_version).exists():
                continue
            in_service = Counter(live.filter(state=WorkerState.IN_SERVICE).values_list("version", flat=True))
            trying = list(live.filter(version=qs.desired_version).exclude(state=WorkerState.IN_SERVICE)[:SAMPLES])
            findings.append(Finding(
                subject=qs.queue, queue=qs.queue, onset_at=qs.desired_version_set_at,
                title=f"No instance of {qs.queue} runs desired version {qs.desired_version} in service",
                summary=(f"{qs.desired_version} was made the desired version of {qs.queue} at "
                         f"{qs.desired_version_set_at:%Y-%m-%d %H:%M} UTC, but no live in-service instance runs "
                         f"it; in service: {', '.join(f'{v} ×{n}' for v, n in in_service.items()) or 'nothing'}."),
                evidence={"queue": qs.queue, "desired_version": qs.desired_version,
                          "desired_version_set_at": qs.desired_version_set_at.isoformat(),
                          "in_service_versions": dict(in_service),
                          "desired_version_instances": [_worker_sample(w, now) for w in trying],
                          "recent_errors": _recent_errors(qs.queue, now)},
            ))
        return findings


class QueuedTooLong(Rule):
    kind = "queued_too_long"
    label = "Jobs queued too long"
    description = "Jobs still waiting for a worker longer than the limit (build start delays)."
    public_message = "Builds on {queue} are starting later than usual. We are investigating."
    params = (Param("minutes", 15, "Queued for longer than (minutes)", 1, 1440),
              Param("min_jobs", 1, "Fire at this many jobs", 1))

    def evaluate(self, p: dict, now: datetime, scope: Scope | None = None) -> list[Finding]:
        groups = job_queries.queued_jobs_by_queue(queued_before=now - timedelta(minutes=p["minutes"]),
                                                  min_count=p["min_jobs"], samples=SAMPLES)
        findings = []
        for g in groups:
            queue = g["queue"]
            workers = list(Worker.objects.in_service(now).filter(queue=queue))
            wait = (now - g["oldest"]).total_seconds() / 60
            findings.append(Finding(
                subject=queue, queue=queue, onset_at=g["oldest"],
                title=f"{g['count']} job(s) on {queue} queued longer than {p['minutes']:g} minutes",
                summary=(f"{g['count']} job(s) on {queue} have waited more than {p['minutes']:g} minutes for a worker; "
                         f"the oldest for {wait:.0f} minutes. In service: {len(workers)} instance(s), "
                         f"{sum(w.busy for w in workers)} of {sum(w.pool_size for w in workers)} slots busy."),
                evidence={"queue": queue, "count": g["count"], "oldest_queued_at": g["oldest"].isoformat(),
                          "oldest_wait_minutes": round(wait, 1),
                          "capacity": sum(w.pool_size for w in workers), "busy": sum(w.busy for w in workers),
                          "jobs": g["jobs"]},
            ))
        return findings


class StaleJobs(Rule):
    kind = "stale_jobs"
    label = "Stale jobs errored"
    description = ("Running jobs without any state or log activity for the stale limit are errored with a stated "
                   "reason on every evaluation; this alert fires when many were errored in the window.")
    public_message = "Some running jobs on {queue} stopped responding and were ended. We are investigating."
    params = (Param("stale_minutes", 30, "Error running jobs silent for (minutes)", 1, 1440),
              Param("window_minutes", 60, "Window (minutes)", 1, 10080),
              Param("min_jobs", 3, "Fire at this many errored jobs", 1))

    def evaluate(self, p: dict, now: datetime, scope: Scope | None = None) -> list[Finding]:
        since = now - timedelta(minutes=p["window_minutes"])
        groups = job_queries.stale_errored_jobs_by_queue(since=since, until=now, min_count=p["min_jobs"],
                                                         samples=SAMPLES)
        findings = []
        for g in groups:
            queue = g["queue"]
            findings.append(Finding(
                subject=queue, queue=queue, onset_at=g["first_activity"],
                title=f"{g['count']} stale job(s) on {queue} errored",
                summary=(f"{g['count']} running job(s) on {queue} showed no state or log activity for "
                         f"{p['stale_minutes']:g} minutes and were errored in the last {p['window_minutes']:g} "
                         f"minutes."),
                evidence={"queue": queue, "count": g["count"], "workers": g["workers"], "jobs": g["jobs"]},
            ))
        return findings


class LogDeadLetters(Rule):
    kind = "log_dead_letters"
    label = "Log parts set aside"
    description = ("Accepted log parts that could not be stored for a reason no retry cures were set aside as dead "
                   "letters (the log shows a marker in their place); staff see them on the fleet page and in the "
                   "admin. Fires per queue of the jobs concerned.")
    public_message = "Parts of some build logs on {queue} could not be saved. We are investigating."
    params = (Param("window_minutes", 60, "Window (minutes)", 1, 10080),
              Param("min_parts", 1, "Fire at this many parts set aside", 1))

    def evaluate(self, p: dict, now: datetime, scope: Scope | None = None) -> list[Finding]:
        since = now - timedelta(minutes=p["window_minutes"])
        findings = []
        for g in job_queries.dead_letters_by_queue(since=since, min_count=p["min_parts"], samples=SAMPLES):
            queue = g["queue"] or "(deleted jobs)"
            jobs = sorted({d["job_id"] for d in g["latest"]})
            findings.append(Finding(
                subject=f"{queue}:dead-letters", queue=g["queue"], onset_at=g["onset"],
                title=f"{g['count']} log part(s) of jobs on {queue} could not be stored",
                summary=(f"In the last {p['window_minutes']:g} minutes, {g['count']} accepted log part(s) of jobs on "
                         f"{queue} failed to store for a reason a retry cannot cure and were set aside (latest "
                         f"error: {g['latest'][0]['error'][:200]}). Later parts were stored."),
                evidence={"queue": g["queue"], "count": g["count"], "window_minutes": p["window_minutes"],
                          "job_ids": jobs, "dead_letters": g["latest"]},
            ))
        return findings


class LogArchiveBacklog(Rule):
    kind = "log_archive_backlog"
    label = "Log archive backlog"
    description = ("Finished jobs' logs wait to move from the database to the log storage for longer than this "
                   "(the storage is unreachable or failing, or no Celery beat or worker runs). Their logs stay "
                   "readable from the database meanwhile.")
    public_message = "Finished build logs are being moved to storage more slowly than usual. Nothing is lost."
    params = (Param("max_minutes", 60, "Fire when the oldest waiting log finished more than (minutes) ago", 1, 10080),)

    def evaluate(self, p: dict, now: datetime) -> list[Finding]:
        totals = job_queries.log_storage_totals(now=now)
        oldest = totals["backlog_oldest"]
        if oldest is None or oldest > now - timedelta(minutes=p["max_minutes"]):
            return []
        return [Finding(
            subject="log-archive:backlog", queue="", onset_at=oldest + timedelta(minutes=p["max_minutes"]),
            title=f"{totals['backlog']} finished log(s) wait to be archived",
            summary=(f"{totals['backlog']} finished job attempt(s) still keep their logs in the database; the "
                     f"oldest finished at {oldest:%Y-%m-%d %H:%M} UTC, more than {p['max_minutes']:g} minutes ago. "
                     "Check the log storage (LOG_STORAGE_URL) and the Celery worker's archive_log errors."),
            evidence={"backlog": totals["backlog"], "oldest": oldest.isoformat(), "max_minutes": p["max_minutes"]},
        )]


RULES: dict[str, Rule] = {r.kind: r for r in (
    InconsistentJobs(), VersionFailureRate(), ErrorBurst(), StuckStarting(), CapacityLow(),
    DesiredVersionMissing(), QueuedTooLong(), StaleJobs(), LogDeadLetters(), LogArchiveBacklog())}

class RolloutHalted(Rule):
    """Not evaluated with the others: fleet/rollouts.py raises it when a rollout's gate fires, and it stays
    open until staff acknowledge or resolve it (the rollback itself is already done)."""

    kind = "rollout_halted"
    label = "Rollout halted and rolled back"
    description = "A staged rollout's gate fired for the new version; the queue was rolled back automatically."
    public_message = ("A worker update on {queue} misbehaved and was rolled back automatically. Builds that "
                      "failed unexpectedly in the meantime can be restarted.")


# Alert kinds raised outside evaluate(): their labels and public messages for pages and incident drafts.
ALERT_KINDS: dict[str, Rule] = {**RULES, RolloutHalted.kind: RolloutHalted()}

# The rules that honour a Scope: a rollout's gates (fleet/rollouts.py). The others look at the whole fleet.
GATE_RULES = (InconsistentJobs.kind, VersionFailureRate.kind, ErrorBurst.kind, StuckStarting.kind, CapacityLow.kind)


def rule_params(kind: str, row: AlertRule | None = None) -> dict:
    """The rule's thresholds: its defaults overridden by what staff saved."""
    rule = RULES[kind]
    saved = (row or AlertRule.objects.filter(kind=kind).first() or AlertRule(kind=kind)).params or {}
    return {prm.name: saved.get(prm.name, prm.default) for prm in rule.all_params()}


def rule_rows() -> dict[str, AlertRule]:
    """A stored row for every rule kind, created with the defaults on first use."""
    rows = {r.kind: r for r in AlertRule.objects.filter(kind__in=RULES)}
    for kind in RULES:
        if kind not in rows:
            rows[kind], _ = AlertRule.objects.get_or_create(kind=kind)
    return rows


@transaction.atomic
def alert_rule_update(*, kind: str, enabled: bool, raw: dict, user, now: datetime | None = None) -> list[str]:
    """Save staff-edited thresholds; returns error messages (and saves nothing) if any value is bad."""
    rule = RULES[kind]
    params, errors = {}, []
    for prm in rule.all_params():
        try:
            params[prm.name] = prm.clean(raw.get(prm.name, ""))
        except ValueError as e:
            errors.append(str(e))
    if errors:
        return errors
    row, _ = AlertRule.objects.select_for_update().get_or_create(kind=kind)
    row.enabled, row.params, row.updated_by, row.updated_at = enabled, params, user, now or timezone.now()
    row.save()
    return []


# --- lifecycle -------------------------------------------------------------------------------------


def alert_raise(kind: str, finding: Finding, now: datetime) -> Alert | None:
    """Open an alert for the finding, or refresh the open one; returns the alert if newly fired."""
    fields = {"title": finding.title[:255], "summary": finding.summary,
              "evidence": {**finding.evidence, "queues": [finding.queue]}, "last_seen_at": now}
    with transaction.atomic():
        alert = Alert.objects.open().select_for_update().filter(rule=kind, subject=finding.subject).first()
        if alert is None:
            try:
                with transaction.atomic():  # the partial unique constraint arbitrates concurrent evaluations
                    alert = Alert.objects.create(rule=kind, subject=finding.subject[:255], fired_at=now,
                                                 onset_at=finding.onset_at, **fields)
            except IntegrityError:
                alert = Alert.objects.open().select_for_update().get(rule=kind, subject=finding.subject)
            else:
                announce_fleet("alert", alert=alert.pk)
                return alert
        for name, value in fields.items():
            setattr(alert, name, value)
        alert.save(update_fields=list(fields))
    return None


@transaction.atomic
def alert_resolve(*, alert: Alert, now: datetime, resolution: str) -> bool:
    if not alert.resolve(now, resolution):
        return False
    announce_fleet("alert", alert=alert.pk)
    return True


@transaction.atomic
def alert_acknowledge(*, alert: Alert, user, now: datetime | None = None) -> bool:
    if not alert.acknowledge(user, now or timezone.now()):
        return False
    announce_fleet("alert", alert=alert.pk)
    return True


@dataclass
class Evaluation:
    """What one evaluation changed: the caller notifies staff of what fired and resolved."""

    fired: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    stale_errored: list[int] = field(default_factory=list)


def alerts_evaluate(*, now: datetime | None = None) -> Evaluation:
    """Run every rule as of `now`: sweep stale jobs, raise, refresh and resolve alerts. Notifies no one."""
    now = now or timezone.now()
    result = Evaluation()
    rows = rule_rows()
    if rows[StaleJobs.kind].enabled:
        minutes = rule_params(StaleJobs.kind, rows[StaleJobs.kind])["stale_minutes"]
        result.stale_errored = jobs_error_stale(now=now, minutes=minutes)
    for kind, rule in RULES.items():
        params = rule_params(kind, rows[kind])
        try:
            findings = rule.evaluate(params, now) if rows[kind].enabled else []
        except Exception:  # one broken rule must not silence the others; its open alerts stay as they are
            log.exception("alert rule %s failed", kind)
            continue
        for finding in findings:
            fired = alert_raise(kind, finding, now)
            if fired is not None:
                result.fired.append(fired)
        current = {f.subject for f in findings}
        clear_since = now - timedelta(minutes=params["clear_minutes"])
        for alert in Alert.objects.open().filter(rule=kind).exclude(subject__in=current):
            if not rows[kind].enabled:
                reason = "rule disabled"
            elif alert.last_seen_at <= clear_since:
                reason = f"condition clear for {params['clear_minutes']:g} minutes"
            else:
                continue
            if alert_resolve(alert=alert, now=now, resolution=reason):
                result.resolved.append(alert)
    return result


def alert_draft_incident(*, alert: Alert, user) -> str:
    """Draft an unpublished incident from the alert on the status page; returns the draft's staff URL."""
    from incidents.services import incident_draft_from_alert, incident_staff_url  # the one named entry point

    with transaction.atomic():
        alert = Alert.objects.select_for_update().get(pk=alert.pk)  # two clicks must not draft two incidents
        if alert.incident_url:
            return alert.incident_url
        queues = alert.evidence.get("queues") or []
        rule = ALERT_KINDS.get(alert.rule, Rule())
        where = ", ".join(queues) or "some queues"
        # The draft is public once published: a plain title and message, not the internal evidence.
        incident = incident_draft_from_alert(title=f"{rule.label or 'Problem'} on {where}"[:200],
                                             message=rule.public_message.format(queue=where), queues=queues,
                                             created_by=user)
        alert.incident_id, alert.incident_url = incident.pk, incident_staff_url(incident)
        alert.save(update_fields=["incident_id", "incident_url"])
    return alert.incident_url
