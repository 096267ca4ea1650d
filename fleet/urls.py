from django.urls import path

from . import api, views

urlpatterns = [
    path("api/v1/workers/<str:name>/heartbeat", api.worker_heartbeat, name="api-worker-heartbeat"),
    path("fleet/", views.fleet_page, name="fleet"),
    path("fleet/live", views.fleet_fragment, name="fleet-live"),
    path("fleet/queue", views.fleet_queue_action, name="fleet-queue"),
    path("fleet/worker-drain", views.fleet_worker_drain, name="fleet-worker-drain"),
    path("alerts/", views.alerts_page, name="alerts"),
    path("alerts/rules/", views.alert_rules, name="alerts-rules"),
    path("alerts/<int:alert_id>/", views.alert_detail, name="alerts-detail"),
    path("alerts/<int:alert_id>/acknowledge", views.alert_acknowledge, name="alerts-acknowledge"),
    path("alerts/<int:alert_id>/incident", views.alert_incident, name="alerts-incident"),
]
