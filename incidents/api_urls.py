"""Statuspage-compatible public JSON under /api/v2/."""

from django.urls import path

from . import api

urlpatterns = [
    path("summary.json", api.summary, name="statusapi-summary"),
    path("status.json", api.status, name="statusapi-status"),
    path("components.json", api.components, name="statusapi-components"),
    path("incidents.json", api.incidents, name="statusapi-incidents"),
    path("incidents/unresolved.json", api.incidents_unresolved, name="statusapi-incidents-unresolved"),
    path("scheduled-maintenances.json", api.scheduled_maintenances, name="statusapi-maintenances"),
    path("scheduled-maintenances/upcoming.json", api.scheduled_maintenances_upcoming,
         name="statusapi-maintenances-upcoming"),
    path("scheduled-maintenances/active.json", api.scheduled_maintenances_active,
         name="statusapi-maintenances-active"),
]
