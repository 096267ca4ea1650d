from django.urls import path

from buildboard.lib.jsonapi import route

from . import api, views

urlpatterns = [
    path("", views.home, name="jobs-home"),
    path("builds/<int:build_id>/", views.build_detail, name="jobs-build"),
    path("jobs/<int:job_id>/", views.job_detail, name="jobs-detail"),
    path("builds/<int:build_id>/row", views.build_row, name="jobs-build-row"),
    path("builds/<int:build_id>/action", views.build_action, name="jobs-build-action"),
    path("jobs/<int:job_id>/log.txt", api.job_log_txt, name="jobs-log-txt"),
    path("jobs/<int:job_id>/cancel", views.job_cancel, name="jobs-cancel"),
    path("jobs/<int:job_id>/restart", views.job_restart, name="jobs-restart"),
    path("api/v1/openapi.json", api.openapi, name="api-openapi"),
    path("api/v1/builds", api.builds_create, name="api-builds-create"),
    path("api/v1/jobs/<int:job_id>", api.job_detail, name="api-job-detail"),
    path("api/v1/jobs/<int:job_id>/state", api.job_state, name="api-job-state"),
    path("api/v1/jobs/<int:job_id>/log", route(api.job_log, api.job_log_append), name="api-job-log"),
    path("api/v1/jobs/<int:job_id>/restart", api.job_restart, name="api-job-restart"),
    path("api/v1/jobs/<int:job_id>/cancel", api.job_cancel, name="api-job-cancel"),
    path("<str:owner>/<str:name>.svg", views.badge, name="jobs-badge"),
    path("<str:owner>/<str:name>/", views.repository_detail, name="jobs-repository"),
    path("<str:owner>/<str:name>/settings", views.repository_settings, name="jobs-repository-settings"),
]
