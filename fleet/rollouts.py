"""Staged rollouts of a worker version on one queue, gated by the fleet's own alert rules.

A rollout moves a queue from its previous version to a new one in stages (by default one canary instance,
then 10%, 50% and 100%), each soaking for a while. Which instances run the new version at a stage follows
from a stable hash of their names (Rollout.chosen), so heartbeats answer the same thing every time and
after any restart: the plan lives in the database and nowhere else. Gates (rollouts_check, run by Celery
beat) evaluate the alert rules in GATE_RULES scoped to the new version against the previous one since the
rollout began, plus a start gate: instances of the new version that cannot pull their image or do not come
into service within ROLLOUT_START_MINUTES. Any gate firing halts the rollout and rolls the queue back. Like
alert evaluation, checks return the alerts that fired; the task layer sends the notifications."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from jobs import queries as job_queries

from . import alerts, services
from .events import announce_fleet
from .models import (
    ACTIVE_ROLLOUT_STATES,
    DEFAULT_STAGES,
    Alert,
    QueueSettings,
    Rollout,
    RolloutEvent,
    RolloutState,
    VersionSighting,
    Worker,
    stage_size,
    stages_problem,
)
from .services import queue_instances

Kind = RolloutEvent.Kind
GATES_ACTOR = "gates"


class RolloutRefused(Exception):
    """A request the plan cannot take; nothing was changed. `status` is the HTTP status to answer."""

    def __init__(self, status: int, message: str, **extra):
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


# --- preflight -----------------------------------------------------------------------------------------


def preflight(*, queue: str, version: str, now: datetime) -> list[str]:
    """Warnings about moving `queue` to `version`: it has not served lately, or its image would not pull."""
    hours = settings.ROLLOUT_PREFLIGHT_HOURS
    seen = VersionSighting.objects.filter(queue=queue, version=version).first()
    warnings = []
    if seen is None or seen.last_in_service_at is None:
        # A new version: its canary is its first test. Said out loud, so a typo in the version is caught here.
        warnings.append(f"No instance of {queue} has ever been in service on {version}.")
    elif seen.last_in_service_at < now - timedelta(hours=hours):
        warnings.append(f"No instance of {queue} has been in service on {version} in the last {hours:g} hours "
                        f"(last at {seen.last_in_service_at:%Y-%m-%d %H:%M} UTC).")
    if seen and seen.last_pull_error_at and (seen.last_in_service_at is None
                                             or seen.last_pull_error_at >= seen.last_in_service_at):
        warnings.append(f"Instances of {queue} on {version} last reported an image pull error "
                        f"({seen.last_pull_error_at:%Y-%m-%d %H:%M} UTC): {seen.last_pull_error}")
    return warnings


def previous_version_of(queue: str, now: datetime) -> str:
    """The version the queue runs now: what staff last asked for, else the most served version."""
    wanted = QueueSettings.for_queue(queue).desired_version
    if wanted:
        return wanted
    versions = list(Worker.objects.in_service(now).filter(queue=queue).values_list("version", flat=True))
    return max(sorted(set(versions)), key=versions.count) if versions else ""


# --- the plan's life -----------------------------------------------------------------------------------


def _event(rollout: Rollout, kind: str, now: datetime, *, user=None, message: str = "",
           evidence: dict | None = None) -> RolloutEvent:
    return RolloutEvent.objects.create(rollout=rollout, kind=kind, at=now, stage=rollout.stage, user=user,
                                       actor=user.get_username() if user else GATES_ACTOR, message=message,
                                       evidence=evidence or {})


def _set_queue_version(queue: str, version: str, user, now: datetime) -> None:
    if QueueSettings.for_queue(queue).desired_version != version:
        services.queue_settings_update(queue=queue, user=user, now=now, desired_version=version)


def _jobs_by_version(rollout: Rollout, since: datetime, now: datetime) -> dict:
    counts = job_queries.decided_jobs_by_version(since=since, until=now)
    result = {}
    for version in (rollout.version, rollout.previous_version):
        failed, total = counts.get((rollout.queue, version), (0, 0))
        result[version] = {"finished": total, "failed": failed}
    return result


@transaction.atomic
def rollout_start(*, queue: str, version: str, user, stages: list[str] | None = None,
                  soak_minutes: float | None = None, confirm: bool = False,
                  now: datetime | None = None) -> Rollout:
    """Start a staged rollout; raises RolloutRefused (and changes nothing) when the plan cannot be made.
    A preflight warning refuses it too, unless `confirm`."""
    now = now or timezone.now()
    stages = list(DEFAULT_STAGES if stages is None else stages)
    soak = settings.ROLLOUT_SOAK_MINUTES if soak_minutes is None else soak_minutes
    if (problem := stages_problem(stages)) is not None:
        raise RolloutRefused(400, problem)
    if not soak > 0:
        raise RolloutRefused(400, f"soak_minutes must be more than 0, not {soak:g}")
    # Serialise starts on one queue: the settings row is the queue's lock (the constraint backs it up).
    QueueSettings.objects.select_for_update().filter(queue=queue).first()
    current = Rollout.objects.active().filter(queue=queue).first()
    if current is not None:
        raise RolloutRefused(409, f"rollout {current.pk} of {current.version} on {queue} is {current.state}; "
                                  "abort it or let it finish first", rollout=current.pk)
    previous = previous_version_of(queue, now)
    if previous == version:
        raise RolloutRefused(409, f"{queue} already runs {version}")
    if not previous:
        raise RolloutRefused(409, f"no instance of {queue} is in service and no version is set for it: "
                                  "there is nothing to roll out from or back to")
    warnings = preflight(queue=queue, version=version, now=now)
    if warnings and not confirm:
        raise RolloutRefused(409, "preflight warnings; send \"confirm\": true to start anyway", warnings=warnings)
    try:
        with transaction.atomic():
            rollout = Rollout.objects.create(queue=queue, version=version, previous_version=previous, stages=stages,
                                             soak_minutes=soak, created_at=now, stage_started_at=now,
                                             created_by=user)
    except IntegrityError:
        raise RolloutRefused(409, f"another rollout on {queue} started at the same time") from None
    _event(rollout, Kind.STARTED, now, user=user,
           message=f"Rollout of {version} on {queue} (from {previous}): stages {', '.join(stages)}, "
                   f"soak {soak:g} min." + (" Preflight warnings confirmed." if warnings else ""),
           evidence={"warnings": warnings} if warnings else {})
    _event(rollout, Kind.STAGE_STARTED, now, message=f"Stage 1 of {len(stages)}: {stages[0]}",
           evidence={"instances": len(rollout.chosen(queue_instances(queue, now)))})
    announce_fleet("rollout", queue=queue)
    return rollout


def _locked(rollout: Rollout) -> Rollout:
    return Rollout.objects.select_for_update().get(pk=rollout.pk)


def _roll_back(rollout: Rollout, state: str, reason: str, user, now: datetime) -> None:
    rollout.state, rollout.finished_at, rollout.reason = state, now, reason
    rollout.save()
    _set_queue_version(rollout.queue, rollout.previous_version, user, now)


@transaction.atomic
def rollout_pause(*, rollout: Rollout, user, now: datetime | None = None) -> Rollout:
    now = now or timezone.now()
    rollout = _locked(rollout)
    if rollout.state != RolloutState.RUNNING:
        raise RolloutRefused(409, f"only a running rollout can be paused; this one is {rollout.state}")
    rollout.state, rollout.paused_at = RolloutState.PAUSED, now
    rollout.save()
    _event(rollout, Kind.PAUSED, now, user=user, message="Paused: stays at this stage; gates keep checking.")
    announce_fleet("rollout", queue=rollout.queue)
    return rollout


@transaction.atomic
def rollout_resume(*, rollout: Rollout, user, now: datetime | None = None) -> Rollout:
    now = now or timezone.now()
    rollout = _locked(rollout)
    if rollout.state != RolloutState.PAUSED:
        raise RolloutRefused(409, f"only a paused rollout can be resumed; this one is {rollout.state}")
    # The soak counts what ran unpaused: the pause is added to the stage's start.
    rollout.stage_started_at += now - (rollout.paused_at or now)
    rollout.state, rollout.paused_at = RolloutState.RUNNING, None
    rollout.save()
    _event(rollout, Kind.RESUMED, now, user=user, message=f"Resumed; this stage soaks until "
                                                          f"{rollout.soak_ends_at():%H:%M:%S} UTC.")
    announce_fleet("rollout", queue=rollout.queue)
    return rollout


@transaction.atomic
def rollout_abort(*, rollout: Rollout, user, now: datetime | None = None) -> Rollout:
    now = now or timezone.now()
    rollout = _locked(rollout)
    if rollout.state not in ACTIVE_ROLLOUT_STATES:
        raise RolloutRefused(409, f"this rollout is already {rollout.state}")
    _roll_back(rollout, RolloutState.ABORTED, "aborted by staff", user, now)
    _event(rollout, Kind.ABORTED, now, user=user,
           message=f"Aborted; {rollout.queue} goes back to {rollout.previous_version}.")
    announce_fleet("rollout", queue=rollout.queue)
    return rollout


@dataclass
class Check:
    """What one check of a rollout did: gate results, and the alert that fired if it halted."""

    gates: dict = field(default_factory=dict)
    fired: list[Alert] = field(default_factory=list)
    advanced: bool = False


def _start_gate(rollout: Rollout, now: datetime) -> alerts.Finding | None:
    """Instances of the new version that cannot pull their image, or do not come into service soon."""
    minutes = settings.ROLLOUT_START_MINUTES
    seen = VersionSighting.objects.filter(queue=rollout.queue, version=rollout.version,
                                          last_pull_error_at__gte=rollout.created_at).first()
    stuck = list(Worker.objects.stuck_starting(now, minutes).filter(queue=rollout.queue, version=rollout.version)
                 .filter(state_since__gte=rollout.created_at - timedelta(minutes=minutes)))
    if seen is None and not stuck:
        return None
    problems = []
    if seen is not None:
        problems.append(f"an instance could not pull its image at {seen.last_pull_error_at:%H:%M:%S} UTC: "
                        f"{seen.last_pull_error}")
    if stuck:
        problems.append(f"{len(stuck)} instance(s) starting for more than {minutes:g} minutes: "
                        f"{', '.join(w.name for w in stuck[:alerts.SAMPLES])}")
    return alerts.Finding(
        subject=f"{rollout.queue}@{rollout.version}", queue=rollout.queue,
        onset_at=seen.last_pull_error_at if seen else stuck[0].state_since,
        title=f"{rollout.version} on {rollout.queue} does not come into service",
        summary="Instances told to run " + rollout.version + ": " + "; ".join(problems) + ".",
        evidence={"queue": rollout.queue, "version": rollout.version,
                  "pull_error": seen.last_pull_error if seen else "",
                  "stuck_instances": [w.name for w in stuck[:alerts.SAMPLES]]})


def _gates(rollout: Rollout, now: datetime) -> tuple[dict, list[tuple[str, alerts.Finding]]]:
    scope = alerts.Scope(queue=rollout.queue, version=rollout.version, reference=rollout.previous_version,
                         since=rollout.created_at)
    rows = alerts.rule_rows()
    results, fired = {}, []
    for kind in alerts.GATE_RULES:
        if not rows[kind].enabled:
            results[kind] = {"fired": False, "note": "rule disabled"}
            continue
        findings = alerts.RULES[kind].evaluate(alerts.rule_params(kind, rows[kind]), now, scope)
        results[kind] = {"fired": bool(findings), "findings": [
            {"title": f.title, "summary": f.summary, "evidence": f.evidence} for f in findings]}
        fired += [(kind, f) for f in findings]
    start = _start_gate(rollout, now)
    results["start"] = {"fired": start is not None, "findings": [
        {"title": start.title, "summary": start.summary, "evidence": start.evidence}] if start else []}
    if start is not None:
        fired.append(("start", start))
    return results, fired


def _halt(rollout: Rollout, fired: list[tuple[str, alerts.Finding]], gates: dict, now: datetime) -> Alert:
    names = ", ".join(sorted({kind for kind, _ in fired}))
    reason = f"gate {names} fired for {rollout.version}: " + "; ".join(f.title for _, f in fired)
    _roll_back(rollout, RolloutState.HALTED, reason, None, now)
    jobs = _jobs_by_version(rollout, rollout.created_at, now)
    _event(rollout, Kind.HALTED, now, message=f"Halted at stage {rollout.stage + 1} ({rollout.stage_label}) and "
                                              f"rolled back to {rollout.previous_version}: {reason}",
           evidence={"gates": gates, "jobs": jobs})
    link = settings.SITE_ROOT + rollout.get_absolute_url()
    finding = alerts.Finding(
        subject=f"rollout:{rollout.pk}", queue=rollout.queue, onset_at=min(f.onset_at or now for _, f in fired),
        title=f"Rollout {rollout.pk} of {rollout.version} on {rollout.queue} halted and rolled back "
              f"to {rollout.previous_version}"[:255],
        summary=(f"Rollout {rollout.pk} of {rollout.version} on {rollout.queue} halted at stage "
                 f"{rollout.stage + 1} of {len(rollout.stages)} ({rollout.stage_label}); instances are told to "
                 f"run {rollout.previous_version} again. {reason}. Timeline: {link}"),
        evidence={"queue": rollout.queue, "rollout": rollout.pk, "rollout_url": link, "version": rollout.version,
                  "previous_version": rollout.previous_version, "stage": rollout.stage_label,
                  "gates_fired": sorted({kind for kind, _ in fired}),
                  "jobs_on_version": jobs[rollout.version], "jobs_on_previous": jobs[rollout.previous_version],
                  "findings": [{"gate": kind, "title": f.title, "summary": f.summary} for kind, f in fired],
                  # The way back was not asked for: say whether it looks passable.
                  "rollback_preflight": preflight(queue=rollout.queue, version=rollout.previous_version, now=now)})
    alert = alerts.alert_raise(alerts.RolloutHalted.kind, finding, now)
    if alert is None:  # already open (a check that raced this one): refer to it
        alert = Alert.objects.open().get(rule=alerts.RolloutHalted.kind, subject=finding.subject)
    rollout.alert = alert
    rollout.save(update_fields=["alert"])
    alerts.alert_draft_incident(alert=alert, user=None)
    return alert


def _advance(rollout: Rollout, now: datetime, user, gates: dict, promoted: bool) -> bool:
    """Finish the stage and start the next (or complete); False while the stage's instances are not yet
    in service on the new version."""
    names = queue_instances(rollout.queue, now)
    want = stage_size(rollout.stage_label, len(names))
    serving = Worker.objects.in_service(now).filter(queue=rollout.queue, version=rollout.version).count()
    if serving < want and not promoted:
        return False
    jobs = _jobs_by_version(rollout, rollout.stage_started_at, now)
    _event(rollout, Kind.STAGE_FINISHED, now, user=user,
           message=f"Stage {rollout.stage + 1} ({rollout.stage_label}) finished"
                   + (" early: promoted" if promoted else f" after a {rollout.soak_minutes:g} min soak")
                   + f"; {serving} instance(s) in service on {rollout.version}.",
           evidence={"jobs": jobs, "gates": gates, "serving": serving, "wanted": want})
    if rollout.stage + 1 >= len(rollout.stages):
        rollout.state, rollout.finished_at = RolloutState.COMPLETED, now
        rollout.save()
        _set_queue_version(rollout.queue, rollout.version, user, now)
        _event(rollout, Kind.COMPLETED, now, user=user, message=f"{rollout.queue} runs {rollout.version}.",
               evidence={"jobs": _jobs_by_version(rollout, rollout.created_at, now)})
    else:
        rollout.stage += 1
        rollout.stage_started_at = now
        rollout.save()
        _event(rollout, Kind.STAGE_STARTED, now, user=user,
               message=f"Stage {rollout.stage + 1} of {len(rollout.stages)}: {rollout.stage_label}",
               evidence={"instances": stage_size(rollout.stage_label, len(names))})
    return True


def _check_locked(rollout: Rollout, now: datetime, *, promote_by=None) -> Check:
    gates, fired = _gates(rollout, now)
    result = Check(gates=gates)
    rollout.last_check_at, rollout.last_gates = now, gates
    rollout.save(update_fields=["last_check_at", "last_gates"])
    if fired:
        result.fired.append(_halt(rollout, fired, gates, now))
    elif promote_by is not None:
        _event(rollout, Kind.PROMOTED, now, user=promote_by, message="Promoted: the soak is skipped.",
               evidence={"gates": gates})
        result.advanced = _advance(rollout, now, promote_by, gates, promoted=True)
    elif rollout.state == RolloutState.RUNNING and now >= rollout.soak_ends_at():
        result.advanced = _advance(rollout, now, None, gates, promoted=False)
    if result.fired or result.advanced:
        announce_fleet("rollout", queue=rollout.queue)
    return result


@transaction.atomic
def rollout_check(*, rollout: Rollout, now: datetime | None = None) -> Check:
    """Evaluate the gates of one active rollout: halt and roll back if any fires, else move on to the next
    stage once the soak is over and the stage's instances serve on the new version."""
    now = now or timezone.now()
    rollout = _locked(rollout)
    if not rollout.is_active:
        return Check()
    return _check_locked(rollout, now)


@transaction.atomic
def rollout_promote(*, rollout: Rollout, user, now: datetime | None = None) -> Check:
    """Skip the rest of the stage's soak: the gates are checked first, and still halt a bad version."""
    now = now or timezone.now()
    rollout = _locked(rollout)
    if rollout.state != RolloutState.RUNNING:
        raise RolloutRefused(409, f"only a running rollout can be promoted; this one is {rollout.state}")
    return _check_locked(rollout, now, promote_by=user)


def rollouts_check(*, now: datetime | None = None) -> list[Alert]:
    """Check every active rollout (Celery beat); returns the alerts that fired."""
    now = now or timezone.now()
    fired = []
    for rollout in Rollout.objects.active():
        fired += rollout_check(rollout=rollout, now=now).fired
    return fired


# --- what the API and pages show ------------------------------------------------------------------------


def rollout_data(rollout: Rollout, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    names = queue_instances(rollout.queue, now)
    return {
        "id": rollout.pk, "queue": rollout.queue, "version": rollout.version,
        "previous_version": rollout.previous_version, "state": rollout.state, "stages": rollout.stages,
        "stage": rollout.stage, "stage_label": rollout.stage_label, "soak_minutes": rollout.soak_minutes,
        "stage_started_at": rollout.stage_started_at, "soak_ends_at": rollout.soak_ends_at(),
        "created_at": rollout.created_at, "created_by": rollout.created_by.get_username() if rollout.created_by
        else None, "finished_at": rollout.finished_at, "reason": rollout.reason,
        "instances": len(names), "instances_on_version": sorted(rollout.chosen(names)),
        "last_check_at": rollout.last_check_at, "gates": rollout.last_gates,
        "alert_id": rollout.alert_id, "url": settings.SITE_ROOT + rollout.get_absolute_url(),
        "events": [{"at": e.at, "kind": e.kind, "stage": e.stage, "actor": e.actor, "message": e.message}
                   for e in rollout.events.all()],
    }
