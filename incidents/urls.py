from django.urls import path

from . import feeds, staff, views

urlpatterns = [
    path("", views.status_page, name="incidents-status"),
    path("seq.json", views.status_seq, name="incidents-seq"),
    path("history/", views.history, name="incidents-history"),
    path("history.atom", feeds.HistoryAtomFeed(), name="incidents-feed-atom"),
    path("history.rss", feeds.HistoryRssFeed(), name="incidents-feed-rss"),
    path("incidents/<str:code>/", views.incident_detail, name="incidents-incident"),
    path("maintenance/<str:code>/", views.maintenance_detail, name="incidents-maintenance"),
    path("subscribe/", views.subscribe, name="incidents-subscribe"),
    path("subscribe/webhook/", views.subscribe_url, name="incidents-subscribe-url"),
    path("subscribe/confirm/<str:token>/", views.confirm, name="incidents-confirm"),
    path("subscribe/manage/<str:token>/", views.manage_subscription, name="incidents-manage-subscription"),
    path("unsubscribe/<str:token>/", views.unsubscribe, name="incidents-unsubscribe"),
    path("manage/", staff.dashboard, name="incidents-manage"),
    path("manage/incidents/new/", staff.incident_new, name="incidents-manage-incident-new"),
    path("manage/incidents/<str:code>/", staff.incident_manage, name="incidents-manage-incident"),
    path("manage/incidents/<str:code>/postmortem/", staff.postmortem, name="incidents-manage-postmortem"),
    path("manage/maintenance/new/", staff.maintenance_new, name="incidents-manage-maintenance-new"),
    path("manage/maintenance/<str:code>/", staff.maintenance_manage, name="incidents-manage-maintenance"),
    path("manage/components/new/", staff.component_edit, name="incidents-manage-component-new"),
    path("manage/components/<str:code>/", staff.component_edit, name="incidents-manage-component"),
    path("manage/components/<str:code>/status/", staff.component_status, name="incidents-manage-component-status"),
    path("manage/groups/new/", staff.group_edit, name="incidents-manage-group-new"),
    path("manage/groups/<str:code>/", staff.group_edit, name="incidents-manage-group"),
    path("manage/templates/new/", staff.template_edit, name="incidents-manage-template-new"),
    path("manage/templates/<int:pk>/", staff.template_edit, name="incidents-manage-template"),
    path("manage/webhooks/new/", staff.webhook_new, name="incidents-manage-webhook-new"),
    path("manage/webhooks/<str:code>/delete/", staff.webhook_delete, name="incidents-manage-webhook-delete"),
]
