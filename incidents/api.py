"""The public status JSON, shaped like Atlassian Statuspage's v2 API so existing clients read it unmodified.

Ids are the objects' 12-character codes, times ISO 8601 with offsets, components include their
groups (a group is itself a component with `group: true` and the ids of its `components`)."""

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from . import fastpath, live
from .models import (
    SEVERITY,
    Component,
    ComponentGroup,
    ComponentStatus,
    Impact,
    Incident,
    IncidentUpdate,
    Maintenance,
    MaintenanceStatus,
    MaintenanceUpdate,
    StatusPageState,
)

INDICATORS = {
    "none": "All Systems Operational",
    "minor": "Minor Service Outage",
    "major": "Partial System Outage",
    "critical": "Major Service Outage",
    "maintenance": "Service Under Maintenance",
}
INDICATOR_RANK = {"none": 0, "maintenance": 1, "minor": 2, "major": 3, "critical": 4}
COMPONENT_INDICATOR = {
    ComponentStatus.OPERATIONAL: "none",
    ComponentStatus.UNDER_MAINTENANCE: "maintenance",
    ComponentStatus.DEGRADED_PERFORMANCE: "minor",
    ComponentStatus.PARTIAL_OUTAGE: "major",
    ComponentStatus.MAJOR_OUTAGE: "critical",
}
RECENT_INCIDENTS = 50


def _t(value) -> str | None:
    return value.isoformat() if value else None


def page_json(state: StatusPageState | None = None) -> dict:
    state = state or StatusPageState.current()
    return {
        "id": settings.STATUS_PAGE_ID,
        "name": settings.SITE_NAME,
        "url": settings.SITE_ROOT + "/status/",
        "time_zone": "Etc/UTC",
        "updated_at": _t(state.updated_at),
    }


def overall_indicator(components: list[Component], incidents: list[Incident]) -> str:
    """The worst of the components' statuses and the unresolved incidents' impacts."""
    indicators = [COMPONENT_INDICATOR[ComponentStatus(c.status)] for c in components]
    indicators += [i.impact for i in incidents if not i.is_resolved and i.impact != Impact.NONE]
    return max(indicators, key=INDICATOR_RANK.__getitem__, default="none")


def status_json(components: list[Component], incidents: list[Incident]) -> dict:
    indicator = overall_indicator(components, incidents)
    return {"indicator": indicator, "description": INDICATORS[indicator]}


def component_json(c: Component) -> dict:
    return {
        "id": c.code,
        "name": c.name,
        "status": c.status,
        "created_at": _t(c.created_at),
        "updated_at": _t(c.updated_at),
        "position": c.position,
        "description": c.description or None,
        "showcase": c.show_uptime,
        "start_date": c.start_date.isoformat() if c.start_date else None,
        "group_id": c.group.code if c.group else None,
        "page_id": settings.STATUS_PAGE_ID,
        "group": False,
        "only_show_if_degraded": c.only_show_if_degraded,
    }


def group_json(g: ComponentGroup, members: list[Component]) -> dict:
    worst = max((c.status for c in members), key=lambda s: SEVERITY[ComponentStatus(s)],
                default=ComponentStatus.OPERATIONAL)
    return {
        "id": g.code,
        "name": g.name,
        "status": worst,
        "created_at": _t(g.created_at),
        "updated_at": _t(g.updated_at),
        "position": g.position,
        "description": g.description or None,
        "showcase": False,
        "start_date": None,
        "group_id": None,
        "page_id": settings.STATUS_PAGE_ID,
        "group": True,
        "only_show_if_degraded": False,
        "components": [c.code for c in members],
    }


def components_json(components: list[Component]) -> list[dict]:
    """Components and their groups, in page order."""
    out, seen_groups = [], set()
    for c in components:
        if c.group and c.group.pk not in seen_groups:
            seen_groups.add(c.group.pk)
            out.append(group_json(c.group, [m for m in components if m.group_id == c.group.pk]))
        out.append(component_json(c))
    return out


def _update_json(u, parent_code: str) -> dict:
    return {
        "id": u.code,
        "status": u.status,
        "body": u.body,
        "incident_id": parent_code,
        "created_at": _t(u.created_at),
        "updated_at": _t(u.updated_at),
        "display_at": _t(u.display_at),
        "affected_components": u.affected_components or None,
        "deliver_notifications": u.deliver_notifications,
        "custom_tweet": None,
        "tweet_id": None,
    }


def incident_json(i: Incident) -> dict:
    return {
        "id": i.code,
        "name": i.name,
        "status": i.status,
        "created_at": _t(i.created_at),
        "updated_at": _t(i.updated_at),
        "monitoring_at": _t(i.monitoring_at),
        "resolved_at": _t(i.resolved_at),
        "impact": i.impact,
        "shortlink": i.shortlink,
        "started_at": _t(i.started_at),
        "page_id": settings.STATUS_PAGE_ID,
        "incident_updates": [_update_json(u, i.code) for u in i.updates.all()],
        "components": [component_json(c) for c in i.components.all()],
    }


def maintenance_json(m: Maintenance) -> dict:
    return {
        "id": m.code,
        "name": m.name,
        "status": m.status,
        "created_at": _t(m.created_at),
        "updated_at": _t(m.updated_at),
        "monitoring_at": None,
        "resolved_at": _t(m.completed_at),
        "impact": "maintenance",
        "shortlink": m.shortlink,
        "started_at": _t(m.started_at or m.scheduled_for),
        "page_id": settings.STATUS_PAGE_ID,
        "incident_updates": [_update_json(u, m.code) for u in m.updates.all()],
        "components": [component_json(c) for c in m.components.all()],
        "scheduled_for": _t(m.scheduled_for),
        "scheduled_until": _t(m.scheduled_until),
    }


def page_order(c: Component) -> tuple:
    """Groups and ungrouped components share one sequence of positions, as on Statuspage."""
    if c.group:
        return (c.group.position, c.group.name, c.group.pk, c.position, c.name)
    return (c.position, c.name, 0, 0, "")


def all_components() -> list[Component]:
    return sorted(Component.objects.select_related("group"), key=page_order)


def public_incidents():
    return Incident.objects.public().prefetch_related(
        Prefetch("updates", IncidentUpdate.objects.order_by("-display_at", "-id")),
        Prefetch("components", Component.objects.select_related("group")),
    )


def maintenances():
    return Maintenance.objects.prefetch_related(
        Prefetch("updates", MaintenanceUpdate.objects.order_by("-display_at", "-id")),
        Prefetch("components", Component.objects.select_related("group")),
    ).order_by("-scheduled_for", "-id")


def upcoming_maintenances():
    return maintenances().filter(status=MaintenanceStatus.SCHEDULED).order_by("scheduled_for", "id")


def active_maintenances():
    return maintenances().filter(status__in=(MaintenanceStatus.IN_PROGRESS, MaintenanceStatus.VERIFYING))


def _public_json(name: str) -> Callable:
    """A cached, CORS-open GET endpoint; the builder returns the body's keys besides `page`."""

    def decorate(build: Callable[[], dict]) -> Callable:
        @require_GET
        @wraps(build)
        def view(request: HttpRequest) -> HttpResponse:
            def render() -> bytes:
                body = {"page": page_json(state), **build()}
                return DjangoJSONEncoder(separators=(",", ":")).encode(body).encode()

            state = StatusPageState.current()
            content, _ = live.cached(f"api:{name}", render, state)
            response = HttpResponse(content, content_type="application/json")
            response["Access-Control-Allow-Origin"] = "*"
            response["Cache-Control"] = "public, max-age=10"
            return fastpath.store(request, state.key, response)

        return view

    return decorate


@_public_json("summary")
def summary() -> dict:
    components = all_components()
    unresolved = list(public_incidents().unresolved())
    return {
        "components": components_json(components),
        "incidents": [incident_json(i) for i in unresolved],
        "scheduled_maintenances": [maintenance_json(m) for m in upcoming_maintenances()]
        + [maintenance_json(m) for m in active_maintenances()],
        "status": status_json(components, unresolved),
    }


@_public_json("status")
def status() -> dict:
    return {"status": status_json(all_components(), list(Incident.objects.public().unresolved()))}


@_public_json("components")
def components() -> dict:
    return {"components": components_json(all_components())}


@_public_json("incidents")
def incidents() -> dict:
    return {"incidents": [incident_json(i) for i in public_incidents()[:RECENT_INCIDENTS]]}


@_public_json("incidents-unresolved")
def incidents_unresolved() -> dict:
    return {"incidents": [incident_json(i) for i in public_incidents().unresolved()]}


@_public_json("maintenances")
def scheduled_maintenances() -> dict:
    return {"scheduled_maintenances": [maintenance_json(m) for m in maintenances()[:RECENT_INCIDENTS]]}


@_public_json("maintenances-upcoming")
def scheduled_maintenances_upcoming() -> dict:
    return {"scheduled_maintenances": [maintenance_json(m) for m in upcoming_maintenances()]}


@_public_json("maintenances-active")
def scheduled_maintenances_active() -> dict:
    return {"scheduled_maintenances": [maintenance_json(m) for m in active_maintenances()]}
