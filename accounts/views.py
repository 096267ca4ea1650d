"""Pages where organization admins manage members, teams, roles and tokens, and staff manage worker tokens.

Who may do what is decided by accounts.permissions and checked again by the services; an
organization a person may not see is a 404, one they see but may not manage is a 403."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from fleet.queues import known_queues  # the one thing accounts asks of another app: which queues exist

from . import forms, permissions, services
from .models import ApiToken, AuditEntry, Grant, Organization, Team, TokenKind
from .services import Refused

AUDIT_PAGE = 200


def _get_org_for_admin(request: HttpRequest, name: str, repository: str = "") -> Organization:
    """The organization, if the user administers it (or, with `repository`, that repository of it)."""
    org = Organization.objects.filter(name=name).first()
    if org is None:
        raise Http404("No such organization")
    if permissions.can_admin_organization(request.user, org.name):
        return org
    if repository and permissions.access_for(request.user).may("admin", org.name, repository):
        return org
    if request.user.is_staff or permissions.is_member(request.user, org):
        raise PermissionDenied("Only this organization's admins can manage it.")
    raise Http404("No such organization")


def _refused(request: HttpRequest, error: Refused, back: str) -> HttpResponse:
    """Nothing changed: say why, with the status that fits (400 bad input, 404 unknown name, 409 conflict)."""
    return render(request, "accounts/refused.html", {"message": error.message, "back": back}, status=error.status)


def _token_created(request: HttpRequest, token: ApiToken, secret: str, back: str) -> HttpResponse:
    response = render(request, "accounts/token_created.html", {"token": token, "secret": secret, "back": back})
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_GET
def organizations(request: HttpRequest) -> HttpResponse:
    if request.user.is_staff:
        orgs = Organization.objects.all()
    else:
        orgs = Organization.objects.filter(memberships__user=request.user)
    access = permissions.access_for(request.user)
    rows = [(org, permissions.can_admin_organization(request.user, org.name)) for org in orgs]
    ctx = {"rows": rows, "form": forms.OrganizationForm() if request.user.is_staff else None, "access": access}
    return render(request, "accounts/organizations.html", ctx)


@login_required
@require_POST
def organization_create(request: HttpRequest) -> HttpResponse:
    if not permissions.may_operate_fleet(request.user):
        raise PermissionDenied("Only staff create organizations.")
    form = forms.OrganizationForm(request.POST)
    if not form.is_valid():
        return _refused(request, Refused("; ".join(e for errs in form.errors.values() for e in errs)), "/orgs/")
    org = services.organization_create(name=form.cleaned_data["name"], actor=request.user)
    org.new_repositories_private = form.cleaned_data["new_repositories_private"]
    org.save(update_fields=["new_repositories_private"])
    return redirect(org)


@login_required
@require_GET
def organization_detail(request: HttpRequest, org: str) -> HttpResponse:
    org = _get_org_for_admin(request, org)
    members = org.memberships.select_related("user").order_by("user__username")
    grants = org.grants.select_related("user", "team").order_by("repository", "team__name", "user__username")
    tokens = [t for t in services.tokens_managed_by(request.user)
              if (t.kind == TokenKind.BUILD and t.concerns_organization(org.name))
              or (t.kind == TokenKind.PERSONAL and org.memberships.filter(user_id=t.user_id).exists())]
    ctx = {
        "org": org, "members": members, "grants": grants, "teams": org.teams.prefetch_related("members"),
        "tokens": tokens, "grant_form": forms.GrantForm(), "team_form": forms.TeamForm(),
        "token_form": forms.BuildTokenForm(), "audit": AuditEntry.objects.filter(organization=org.name)[:10],
    }
    return render(request, "accounts/organization.html", ctx)


def _grant_target(org: Organization, data: dict) -> dict:
    if data.get("team"):
        team = org.teams.filter(name=data["team"]).first()
        if team is None:
            raise Refused(f"{org.name} has no team {data['team']!r}", 404)
        return {"team": team}
    return {"user": services.user_named(data["username"])}


@login_required
@require_POST
def grant(request: HttpRequest, org: str) -> HttpResponse:
    form = forms.GrantForm(request.POST)
    org = _get_org_for_admin(request, org, request.POST.get("repository", ""))
    back = request.POST.get("back") or org.get_absolute_url()
    if not back.startswith("/") or back.startswith("//"):
        back = org.get_absolute_url()
    if not form.is_valid():
        return _refused(request, Refused("; ".join(e for errs in form.errors.values() for e in errs)), back)
    data = form.cleaned_data
    try:
        services.role_grant(organization=org, repository=data["repository"], role=data["role"],
                            actor=request.user, **_grant_target(org, data))
    except Refused as e:
        return _refused(request, e, back)
    messages.success(request, "Role granted.")
    return redirect(back)


@login_required
@require_POST
def revoke(request: HttpRequest, org: str) -> HttpResponse:
    form = forms.RevokeForm(request.POST)
    if not form.is_valid():
        raise Http404("No such grant")
    target = Grant.objects.filter(pk=form.cleaned_data["grant"], organization__name=org).first()
    if target is None:
        raise Http404("No such grant")
    org = _get_org_for_admin(request, org, target.repository)
    back = org.get_absolute_url()
    try:
        services.role_revoke(organization=org, repository=target.repository, user=target.user, team=target.team,
                             actor=request.user)
    except Refused as e:
        return _refused(request, e, back)
    messages.success(request, "Role revoked.")
    return redirect(back)


@login_required
@require_POST
def member_remove(request: HttpRequest, org: str) -> HttpResponse:
    org = _get_org_for_admin(request, org)
    form = forms.MemberForm(request.POST)
    try:
        if not form.is_valid():
            raise Refused("Name a member.")
        services.member_remove(organization=org, user=services.user_named(form.cleaned_data["username"]),
                               actor=request.user)
    except Refused as e:
        return _refused(request, e, org.get_absolute_url())
    messages.success(request, "Member removed.")
    return redirect(org)


@login_required
@require_POST
def team_create(request: HttpRequest, org: str) -> HttpResponse:
    org = _get_org_for_admin(request, org)
    form = forms.TeamForm(request.POST)
    try:
        if not form.is_valid():
            raise Refused("; ".join(e for errs in form.errors.values() for e in errs))
        team = services.team_create(organization=org, name=form.cleaned_data["name"], actor=request.user)
    except Refused as e:
        return _refused(request, e, org.get_absolute_url())
    return redirect(team)


@login_required
@require_http_methods(["GET", "POST"])
def team_detail(request: HttpRequest, org: str, team: str) -> HttpResponse:
    org = _get_org_for_admin(request, org)
    team = get_object_or_404(Team, organization=org, name=team)
    if request.method == "POST":
        try:
            if "sso_groups" in request.POST:
                form = forms.TeamSettingsForm(request.POST)
                if not form.is_valid():
                    raise Refused("; ".join(e for errs in form.errors.values() for e in errs))
                team.sso_groups = form.cleaned_data["sso_groups"]
                team.save(update_fields=["sso_groups"])
            else:
                form = forms.TeamMemberForm(request.POST)
                if not form.is_valid():
                    raise Refused("Name a user and say add or remove.")
                user = services.user_named(form.cleaned_data["username"])
                if form.cleaned_data["action"] == "add":
                    services.team_member_add(team=team, user=user, actor=request.user)
                else:
                    services.team_member_remove(team=team, user=user, actor=request.user)
        except Refused as e:
            return _refused(request, e, team.get_absolute_url())
        return redirect(team)
    ctx = {"org": org, "team": team, "members": team.members.order_by("username"),
           "grants": team.grants.all(), "member_form": forms.TeamMemberForm(),
           "settings_form": forms.TeamSettingsForm(initial={"sso_groups": team.sso_groups})}
    return render(request, "accounts/team.html", ctx)


@login_required
@require_POST
def build_token_create(request: HttpRequest, org: str) -> HttpResponse:
    org = _get_org_for_admin(request, org)
    form = forms.BuildTokenForm(request.POST)
    try:
        if not form.is_valid():
            raise Refused("; ".join(e for errs in form.errors.values() for e in errs))
        names = form.repository_names()
        token, secret = services.token_create(
            name=form.cleaned_data["name"], kind=TokenKind.BUILD, actor=request.user,
            repositories=[f"{org.name}/{n}" for n in names], organizations=[] if names else [org.name],
            expires_at=form.expires_at())
    except Refused as e:
        return _refused(request, e, org.get_absolute_url())
    return _token_created(request, token, secret, org.get_absolute_url())


@login_required
@require_http_methods(["GET", "POST"])
def tokens(request: HttpRequest) -> HttpResponse:
    """The user's personal tokens (and, for admins and staff, the tokens they manage); POST mints one."""
    if request.method == "POST":
        form = forms.PersonalTokenForm(request.POST)
        try:
            if not form.is_valid():
                raise Refused("; ".join(e for errs in form.errors.values() for e in errs))
            token, secret = services.token_create(name=form.cleaned_data["name"], kind=TokenKind.PERSONAL,
                                                  user=request.user, actor=request.user,
                                                  expires_at=form.expires_at())
        except Refused as e:
            return _refused(request, e, "/tokens/")
        return _token_created(request, token, secret, "/tokens/")
    ctx = {"tokens": services.tokens_managed_by(request.user), "form": forms.PersonalTokenForm(),
           "worker_form": forms.WorkerTokenForm() if permissions.may_operate_fleet(request.user) else None}
    return render(request, "accounts/tokens.html", ctx)


@login_required
@require_POST
def worker_token_create(request: HttpRequest) -> HttpResponse:
    if not permissions.may_operate_fleet(request.user):
        raise PermissionDenied("Only staff manage worker tokens.")
    form = forms.WorkerTokenForm(request.POST)
    try:
        if not form.is_valid():
            raise Refused("; ".join(e for errs in form.errors.values() for e in errs))
        token, secret = services.token_create(name=form.cleaned_data["name"], kind=TokenKind.WORKER,
                                              queues=form.queue_names(), actor=request.user,
                                              expires_at=form.expires_at(), known_queues=known_queues())
    except Refused as e:
        return _refused(request, e, "/tokens/")
    return _token_created(request, token, secret, "/tokens/")


@login_required
@require_POST
def token_revoke(request: HttpRequest, token_id: int) -> HttpResponse:
    token = ApiToken.objects.filter(pk=token_id).first()
    managed = token is not None and any(t.pk == token.pk for t in services.tokens_managed_by(request.user))
    if not managed:
        raise Http404("No such token")
    forms.ConfirmForm(request.POST).is_valid()
    try:
        services.token_revoke(token=token, actor=request.user)
    except Refused as e:
        return _refused(request, e, "/tokens/")
    messages.success(request, f"Token {token.name} revoked; every server refuses it within a second.")
    return redirect(request.POST.get("back") if str(request.POST.get("back", "")).startswith("/orgs/") else "tokens")


@login_required
@require_GET
def organization_audit(request: HttpRequest, org: str) -> HttpResponse:
    org = _get_org_for_admin(request, org)
    entries = AuditEntry.objects.filter(organization=org.name)[:AUDIT_PAGE]
    return render(request, "accounts/audit.html", {"org": org, "entries": entries})


@login_required
@require_GET
def audit(request: HttpRequest) -> HttpResponse:
    if not request.user.is_staff:
        raise PermissionDenied("Only staff see the whole audit log.")
    return render(request, "accounts/audit.html", {"org": None, "entries": AuditEntry.objects.all()[:AUDIT_PAGE]})
