"""Staff pages: the live fleet (rollout and drain controls) and alerts (history, evidence, thresholds)."""

import math
import re
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts import permissions
from jobs import queries as job_queries

from . import alerts, rollouts, services
from .models import Alert, AlertState, Rollout, RolloutEvent, Worker
from .overview import fleet_overview

MAX_CAPACITY = 1_000_000


def staff_required(view: Callable) -> Callable:
    """Anonymous visitors are sent to log in; logged-in non-staff get 403."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not permissions.may_operate_fleet(request.user):
            raise PermissionDenied("Staff only")
        return view(request, *args, **kwargs)

    return wrapper


def _fleet_context() -> dict:
    now = timezone.now()
    starting_minutes = alerts.rule_params(alerts.StuckStarting.kind)["starting_minutes"]
    queues = fleet_overview(now=now, starting_minutes=starting_minutes)
    latest = {}
    for rollout in Rollout.objects.filter(queue__in=[q.queue for q in queues]).order_by("queue", "-created_at"):
        latest.setdefault(rollout.queue, rollout)  # the active one if any (only one), else the latest
    for q in queues:
        q.rollout = latest.get(q.queue)
    return {
        "now": now,
        "queues": queues,
        "recent_rollouts": Rollout.objects.select_related("created_by")[:10],
        "open_alerts": Alert.objects.open().order_by("-fired_at")[:20],
        "dead_letters": job_queries.dead_letters(samples=10),
        "log_storage": job_queries.log_storage_totals(now=now),
        "heartbeat_timeout": settings.FLEET_HEARTBEAT_TIMEOUT,
        "starting_minutes": starting_minutes,
    }


@require_GET
@staff_required
def fleet_page(request: HttpRequest) -> HttpResponse:
    return render(request, "fleet/fleet.html", _fleet_context())


@require_GET
@staff_required
def fleet_fragment(request: HttpRequest) -> HttpResponse:
    """The live part of the fleet page, refetched by static/js/fleet.js when the doorbell rings."""
    return render(request, "fleet/fleet_live.html", _fleet_context())


def _clean_queue_settings(post) -> tuple[dict, list[str]]:
    changes, errors = {}, []
    version = post.get("desired_version", "").strip()
    if len(version) > 64:
        errors.append("The desired version may be at most 64 characters.")
    changes["desired_version"] = version
    raw = post.get("expected_capacity", "").strip() or "0"
    try:
        capacity = int(raw)
        if not 0 <= capacity <= MAX_CAPACITY:
            raise ValueError
        changes["expected_capacity"] = capacity
    except ValueError:
        errors.append(f"Expected capacity must be a whole number from 0 to {MAX_CAPACITY}.")
    return changes, errors


@require_POST
@staff_required
def fleet_queue_action(request: HttpRequest) -> HttpResponse:
    queue = request.POST.get("queue", "").strip()
    action = request.POST.get("action", "")
    if not queue or len(queue) > 100:
        messages.error(request, "Name a queue of at most 100 characters.")
        return redirect("fleet")
    if action == "settings":
        changes, errors = _clean_queue_settings(request.POST)
        for error in errors:
            messages.error(request, error)
        if not errors:
            services.queue_settings_update(queue=queue, user=request.user, **changes)
            wanted = changes["desired_version"] or "no particular version"
            messages.success(request, f"{queue}: desired version {wanted}, expected capacity "
                                      f"{changes['expected_capacity'] or 'not set'}.")
    elif action in ("drain", "undrain"):
        services.queue_settings_update(queue=queue, user=request.user, drain=action == "drain")
        messages.success(request, f"{queue}: {'draining every instance' if action == 'drain' else 'drain lifted'}.")
    elif action == "drain_others":
        count = services.queue_drain_other_versions(queue=queue)
        messages.success(request, f"{queue}: asked {count} instance(s) not on the desired version to drain.")
    else:
        messages.error(request, "Unknown action.")
    return redirect("fleet")


@require_POST
@staff_required
def fleet_worker_drain(request: HttpRequest) -> HttpResponse:
    worker = get_object_or_404(Worker, name=request.POST.get("worker", ""))
    drain = request.POST.get("drain") == "1"
    services.worker_drain_set(worker=worker, drain=drain)
    messages.success(request, f"{worker.name}: {'asked to drain' if drain else 'drain lifted'}.")
    return redirect("fleet")


@require_GET
@staff_required
def alerts_page(request: HttpRequest) -> HttpResponse:
    history = Alert.objects.all()
    state, rule = request.GET.get("state", ""), request.GET.get("rule", "")
    if state in AlertState.values:
        history = history.filter(state=state)
    if rule in alerts.RULES:
        history = history.filter(rule=rule)
    page = Paginator(history.order_by("-fired_at", "-id"), 50).get_page(request.GET.get("page"))
    ctx = {"open_alerts": Alert.objects.open().order_by("-fired_at"), "page": page, "rules": alerts.RULES,
           "states": AlertState.values, "filters": {"state": state, "rule": rule}}
    return render(request, "fleet/alerts.html", ctx)


ISO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d")
# Evidence keys whose plain humanized form reads oddly.
EVIDENCE_LABELS = {"id": "Job", "url": "Link", "oldest_queued_at": "Oldest queued", "count_in_window": "In the window",
                   "pool_size": "Pool", "minutes_in_state": "Minutes in state"}


def _label(key: str) -> str:
    """'exit_code' -> 'Exit code': evidence keys are read by people, not parsed."""
    return EVIDENCE_LABELS.get(key) or key.replace("_", " ").strip().capitalize()


def _cell(value, *, href: str = "") -> dict:
    """How one evidence value shows: a time without microseconds (UTC), a number on one line, a link."""
    if value is None or value == "":
        return {"kind": "none"}
    if href:
        return {"kind": "link", "text": f"Job {value}", "href": href}
    if isinstance(value, str) and ISO_TIME.match(value):
        try:
            at = datetime.fromisoformat(value).astimezone(UTC)
        except ValueError:
            return {"kind": "text", "text": value}
        return {"kind": "time", "iso": at.isoformat(), "text": at.strftime("%Y-%m-%d %H:%M:%S UTC")}
    if isinstance(value, bool | int | float):
        return {"kind": "num", "text": str(value)}
    if isinstance(value, list):
        return {"kind": "text", "text": ", ".join(map(str, value))}
    return {"kind": "text", "text": str(value)}


def _evidence_sections(evidence: dict) -> dict:
    """Split evidence JSON into plain facts, tables (lists of objects) and small mappings for display,
    with keys as words, times without microseconds, and job ids as links to the jobs."""
    facts, tables, mappings = [], [], []
    for key, value in evidence.items():
        label = _label(key)
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            keys = [k for k in dict.fromkeys(k for row in value for k in row)
                    if any(row.get(k) not in (None, "") for row in value)]  # columns that say something
            linked = "id" in keys and "url" in keys
            if linked:
                keys.remove("url")
            rows = [[_cell(row.get(k), href=row.get("url", "") if linked and k == "id" else "") for k in keys]
                    for row in value]
            tables.append({"label": label, "columns": [_label(k) for k in keys], "rows": rows})
        elif isinstance(value, dict):
            mappings.append({"label": label, "items": [(k, _cell(v)) for k, v in value.items()]})
        else:
            facts.append((label, _cell(value)))
    return {"facts": facts, "tables": tables, "mappings": mappings}


@require_GET
@staff_required
def alert_detail(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    rule = alerts.ALERT_KINDS.get(alert.rule)
    ctx = {"alert": alert, "rule": rule, "evidence": _evidence_sections(alert.evidence),
           "earlier": Alert.objects.filter(rule=alert.rule, subject=alert.subject).exclude(pk=alert.pk)[:10]}
    return render(request, "fleet/alert_detail.html", ctx)


@require_POST
@staff_required
def alert_acknowledge(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    if alerts.alert_acknowledge(alert=alert, user=request.user):
        messages.success(request, "Acknowledged.")
    else:
        messages.error(request, f"This alert is {alert.state}; only a firing alert can be acknowledged.")
    return redirect("alerts" if request.POST.get("back") == "list" else alert)


@require_POST
@staff_required
def alert_incident(request: HttpRequest, alert_id: int) -> HttpResponse:
    alert = get_object_or_404(Alert, pk=alert_id)
    return redirect(alerts.alert_draft_incident(alert=alert, user=request.user))


@require_http_methods(["GET", "POST"])
@staff_required
def alert_rules(request: HttpRequest) -> HttpResponse:
    rows = alerts.rule_rows()
    errors: dict[str, list[str]] = {}
    if request.method == "POST":
        kind = request.POST.get("kind", "")
        if kind not in alerts.RULES:
            messages.error(request, "Unknown rule.")
            return redirect("alerts-rules")
        errors[kind] = alerts.alert_rule_update(kind=kind, enabled=request.POST.get("enabled") == "on",
                                                raw=request.POST, user=request.user)
        if not errors[kind]:
            messages.success(request, f"Saved thresholds of “{alerts.RULES[kind].label}”.")
            return redirect("alerts-rules")
    rules = []
    for kind, rule in alerts.RULES.items():
        values = alerts.rule_params(kind, rows[kind])
        if kind in errors and errors[kind]:  # show what was typed next to the error
            values = {p.name: request.POST.get(p.name, "") for p in rule.all_params()}
        rules.append({"rule": rule, "row": rows[kind], "errors": errors.get(kind, []),
                      "params": [(p, values[p.name]) for p in rule.all_params()]})
    return render(request, "fleet/alert_rules.html", {"rules": rules}, status=400 if any(errors.values()) else 200)


def _rollout_stages(rollout: Rollout, events: list[RolloutEvent]) -> list[dict]:
    """Each stage with its start, finish and the jobs that ran on either version meanwhile."""
    stages = [{"number": i + 1, "label": label, "started": None, "finished": None, "jobs": None}
              for i, label in enumerate(rollout.stages)]
    for e in events:
        if e.stage >= len(stages):
            continue
        row = stages[e.stage]
        if e.kind == RolloutEvent.Kind.STAGE_STARTED:
            row["started"] = e.at
        elif e.kind in (RolloutEvent.Kind.STAGE_FINISHED, RolloutEvent.Kind.HALTED):
            row["finished"], row["ended_by"] = e.at, e.kind
            jobs = e.evidence.get("jobs") or {}
            row["jobs"] = [(v, jobs.get(v, {})) for v in (rollout.version, rollout.previous_version)]
    return stages


@require_GET
@staff_required
def rollout_detail(request: HttpRequest, rollout_id: int) -> HttpResponse:
    rollout = get_object_or_404(Rollout.objects.select_related("created_by", "alert"), pk=rollout_id)
    events = list(rollout.events.select_related("user"))
    gate_checks = [(e, sorted((e.evidence.get("gates") or {}).items())) for e in events if e.evidence.get("gates")]
    ctx = {"rollout": rollout, "events": events, "stages": _rollout_stages(rollout, events),
           "gate_checks": gate_checks, "latest_gates": sorted((rollout.last_gates or {}).items())}
    return render(request, "fleet/rollout_detail.html", ctx)


ROLLOUT_ACTIONS = {"pause": rollouts.rollout_pause, "resume": rollouts.rollout_resume,
                   "promote": rollouts.rollout_promote, "abort": rollouts.rollout_abort}


def _clean_rollout_form(post) -> tuple[dict, list[str]]:
    data, errors = {"queue": post.get("queue", "").strip(), "version": post.get("version", "").strip()}, []
    if not data["queue"] or len(data["queue"]) > 100:
        errors.append("Name a queue of at most 100 characters.")
    if not data["version"] or len(data["version"]) > 64:
        errors.append("Name the version to roll out (at most 64 characters).")
    raw_stages = post.get("stages", "").strip()
    data["stages"] = [s.strip() for s in raw_stages.split(",") if s.strip()] if raw_stages else None
    raw_soak = post.get("soak_minutes", "").strip()
    try:
        data["soak_minutes"] = float(raw_soak) if raw_soak else None
        if data["soak_minutes"] is not None and not math.isfinite(data["soak_minutes"]):
            raise ValueError
    except ValueError:
        errors.append("Soak must be a number of minutes.")
    return data, errors


@require_POST
@staff_required
def fleet_rollout_start(request: HttpRequest) -> HttpResponse:
    """Start a rollout from the fleet page. Preflight warnings answer with a page that shows them and asks
    to confirm: the same check as the API's, made on the server."""
    data, errors = _clean_rollout_form(request.POST)
    for error in errors:
        messages.error(request, error)
    if errors:
        return redirect("fleet")
    try:
        rollout = rollouts.rollout_start(user=request.user, confirm=request.POST.get("confirm") == "1", **data)
    except rollouts.RolloutRefused as e:
        if e.extra.get("warnings"):
            ctx = {"form": {**data, "stages": ", ".join(data["stages"] or []),
                            "soak_minutes": request.POST.get("soak_minutes", "")},
                   "warnings": e.extra["warnings"]}
            return render(request, "fleet/rollout_confirm.html", ctx, status=409)
        messages.error(request, e.message)
        return redirect("fleet")
    messages.success(request, f"{rollout.queue}: rollout of {rollout.version} started.")
    return redirect(rollout)


@require_POST
@staff_required
def fleet_rollout_action(request: HttpRequest, rollout_id: int, action: str) -> HttpResponse:
    rollout = get_object_or_404(Rollout, pk=rollout_id)
    if action not in ROLLOUT_ACTIONS:
        raise Http404("No such action")
    try:
        ROLLOUT_ACTIONS[action](rollout=rollout, user=request.user)
    except rollouts.RolloutRefused as e:
        messages.error(request, e.message)
    else:
        messages.success(request, f"Rollout {rollout.pk}: {action} done.")
    return redirect(rollout if request.POST.get("back") == "timeline" else "fleet")
