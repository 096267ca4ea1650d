from django.urls import path

from . import views

urlpatterns = [
    path("orgs/", views.organizations, name="orgs"),
    path("orgs/new", views.organization_create, name="orgs-create"),
    path("orgs/<str:org>/", views.organization_detail, name="orgs-detail"),
    path("orgs/<str:org>/grant", views.grant, name="orgs-grant"),
    path("orgs/<str:org>/revoke", views.revoke, name="orgs-revoke"),
    path("orgs/<str:org>/members/remove", views.member_remove, name="orgs-member-remove"),
    path("orgs/<str:org>/teams", views.team_create, name="orgs-team-create"),
    path("orgs/<str:org>/teams/<str:team>/", views.team_detail, name="orgs-team"),
    path("orgs/<str:org>/tokens", views.build_token_create, name="orgs-token-create"),
    path("orgs/<str:org>/audit/", views.organization_audit, name="orgs-audit"),
    path("tokens/", views.tokens, name="tokens"),
    path("tokens/worker", views.worker_token_create, name="tokens-worker-create"),
    path("tokens/<int:token_id>/revoke", views.token_revoke, name="tokens-revoke"),
    path("audit/", views.audit, name="audit"),
]
