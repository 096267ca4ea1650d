from django.urls import path

from . import api, views

urlpatterns = [
    path("api/v1/workers/<str:name>/heartbeat", api.worker_heartbeat, name="api-worker-heartbeat"),
    path("api/v1/queues/<str:queue>/rollouts", api.rollout_create, name="api-rollouts"),
    path("api/v1/queues/<str:queue>/rollouts/current", api.rollout_current, name="api-rollouts-current"),
    path("api/v1/queues/<str:queue>/rollouts/<int:rollout_id>/pause", api.rollout_pause, name="api-rollout-pause"),
    path("api/v1/queues/<str:queue>/rollouts/<int:rollout_id>/resume", api.rollout_resume,
         name="api-rollout-resume"),
    path("api/v1/queues/<str:queue>/rollouts/<int:rollout_id>/promote", api.rollout_promote,
         name="api-rollout-promote"),
    path("api/v1/queues/<str:queue>/rollouts/<int:rollout_id>/abort", api.rollout_abort, name="api-rollout-abort"),
    path("fleet/", views.fleet_page, name="fleet"),
    path("fleet/live", views.fleet_fragment, name="fleet-live"),
    path("fleet/queue", views.fleet_queue_action, name="fleet-queue"),
    path("fleet/worker-drain", views.fleet_worker_drain, name="fleet-worker-drain"),
    path("fleet/rollouts/<int:rollout_id>/", views.rollout_detail, name="rollouts-detail"),
    path("fleet/rollouts/start", views.fleet_rollout_start, name="fleet-rollout-start"),
    path("fleet/rollouts/<int:rollout_id>/<str:action>", views.fleet_rollout_action, name="fleet-rollout-action"),
    path("alerts/", views.alerts_page, name="alerts"),
    path("alerts/rules/", views.alert_rules, name="alerts-rules"),
    path("alerts/<int:alert_id>/", views.alert_detail, name="alerts-detail"),
    path("alerts/<int:alert_id>/acknowledge", views.alert_acknowledge, name="alerts-acknowledge"),
    path("alerts/<int:alert_id>/incident", views.alert_incident, name="alerts-incident"),
]
