"""Workflows on organizations, roles and tokens, shared by the web UI and the management commands.

Each checks its input and, given an actor, the actor's right to do it; each records itself in the
audit log. Refused raises with a message for people and the HTTP status a view answers with."""

from datetime import datetime

from django.contrib.auth import get_user_model
from django.db import transaction

from . import audit, permissions
from .live import announce_access_changed
from .models import NAME, RANK, ApiToken, Grant, Membership, Organization, Role, Team, TokenKind
from .tokens import revoke as _revoke_token


class Refused(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def organization_named(name: str) -> Organization:
    org = Organization.objects.filter(name=name).first()
    if org is None:
        raise Refused(f"unknown organization {name!r}", 404)
    return org


def user_named(username: str):
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise Refused(f"unknown user {username!r}", 404)
    return user


def parse_scope(scope: str) -> tuple[Organization, str]:
    """'owner' or 'owner/name' -> (organization, repository name or "")."""
    owner, _, name = scope.partition("/")
    if not NAME.fullmatch(owner) or (name and not NAME.fullmatch(name)) or scope.count("/") > 1:
        raise Refused(f"{scope!r} is not an organization or owner/name")
    return organization_named(owner), name


def parse_role(role: str) -> str:
    if role not in Role.values:
        raise Refused(f"unknown role {role!r}; use one of {', '.join(Role.values)}")
    return role


def organization_create(*, name: str, actor=None) -> Organization:
    if not NAME.fullmatch(name):
        raise Refused("an organization name is 1-100 letters, digits, _ . or -")
    org, created = Organization.objects.get_or_create(name=name)
    if created:
        audit.record(actor, "org.create", organization=name, target=name)
    return org


def ensure_organization(name: str) -> Organization:
    """The organization a repository's owner names, created on first use (a build in a new owner)."""
    return Organization.objects.get_or_create(name=name)[0]


def _require_admin(actor, org: Organization, repository: str) -> None:
    """People acting through the UI must administer the scope they change; scripts pass actor=None."""
    if actor is None:
        return
    access = permissions.access_for(actor)
    if RANK[access.organizations.get(org.name)] >= RANK[Role.ADMIN]:
        return
    if repository and access.may(Role.ADMIN, org.name, repository):
        return
    raise Refused("only an admin of this organization or repository may change its roles", 403)


def _check_admins_remain(org: Organization, had_admins: bool) -> None:
    """Refuse (rolling back) a change that leaves an organization that had admins with none."""
    if had_admins and not org.admins().exists():
        raise Refused(f"{org.name} would have no admin left; make someone else admin first", 409)


@transaction.atomic
def role_grant(*, organization: Organization, repository: str, role: str, user=None, team: Team | None = None,
               actor=None) -> Grant:
    role = parse_role(role)
    _require_admin(actor, organization, repository)
    if actor is not None and user is not None and user.pk == actor.pk:
        mine = permissions.access_for(actor).organizations.get(organization.name) if not repository else \
            permissions.access_for(actor).role(organization.name, repository)
        if RANK[role] > RANK[mine]:
            raise Refused("you cannot grant yourself a role above your own", 403)
    if team is not None and team.organization_id != organization.pk:
        raise Refused(f"team {team.name} belongs to another organization")
    had_admins = organization.admins().exists()
    if user is not None:
        Membership.objects.get_or_create(organization=organization, user=user)
    grant, _ = Grant.objects.update_or_create(organization=organization, repository=repository, user=user, team=team,
                                              defaults={"role": role})
    _check_admins_remain(organization, had_admins)
    permissions.forget_access(actor)
    _affected(user, team)
    audit.record(actor, "grant", organization=organization.name, target=grant.grantee_label,
                 detail=f"{role} on {grant.scope_label}")
    return grant


@transaction.atomic
def role_revoke(*, organization: Organization, repository: str, user=None, team: Team | None = None,
                actor=None) -> None:
    _require_admin(actor, organization, repository)
    grants = Grant.objects.filter(organization=organization, repository=repository, user=user, team=team)
    if not grants.exists():
        who = f"team {team.name}" if team else user.get_username()
        raise Refused(f"{who} holds no role on {organization.name}{'/' + repository if repository else ''}")
    label = grants.first().scope_label
    had_admins = organization.admins().exists()
    grants.delete()
    _check_admins_remain(organization, had_admins)
    _affected(user, team)
    audit.record(actor, "revoke", organization=organization.name,
                 target=f"team {team.name}" if team else user.get_username(), detail=f"role on {label}")


@transaction.atomic
def member_remove(*, organization: Organization, user, actor=None) -> None:
    _require_admin(actor, organization, "")
    had_admins = organization.admins().exists()
    Grant.objects.filter(organization=organization, user=user).delete()
    for team in organization.teams.filter(members=user):
        team.members.remove(user)
    deleted, _ = Membership.objects.filter(organization=organization, user=user).delete()
    if not deleted:
        raise Refused(f"{user.get_username()} is not a member of {organization.name}")
    _check_admins_remain(organization, had_admins)
    _affected(user)
    audit.record(actor, "member.remove", organization=organization.name, target=user.get_username())


@transaction.atomic
def team_create(*, organization: Organization, name: str, actor=None) -> Team:
    _require_admin(actor, organization, "")
    if not NAME.fullmatch(name):
        raise Refused("a team name is 1-100 letters, digits, _ . or -")
    if organization.teams.filter(name=name).exists():
        raise Refused(f"{organization.name} already has a team {name!r}")
    team = Team.objects.create(organization=organization, name=name)
    audit.record(actor, "team.create", organization=organization.name, target=f"team {name}")
    return team


@transaction.atomic
def team_member_add(*, team: Team, user, actor=None) -> None:
    _require_admin(actor, team.organization, "")
    Membership.objects.get_or_create(organization=team.organization, user=user)
    team.members.add(user)
    _affected(user)
    audit.record(actor, "team.add", organization=team.organization.name, target=user.get_username(),
                 detail=f"to team {team.name}")


@transaction.atomic
def team_member_remove(*, team: Team, user, actor=None) -> None:
    _require_admin(actor, team.organization, "")
    if not team.members.filter(pk=user.pk).exists():
        raise Refused(f"{user.get_username()} is not in team {team.name}")
    had_admins = team.organization.admins().exists()
    team.members.remove(user)
    _check_admins_remain(team.organization, had_admins)
    _affected(user)
    audit.record(actor, "team.remove", organization=team.organization.name, target=user.get_username(),
                 detail=f"from team {team.name}")


def _affected(user=None, team: Team | None = None) -> None:
    announce_access_changed([user.pk] if user is not None else team.members.values_list("pk", flat=True))


def _organization_of(kind: str, organizations: list[str], repositories: list[str]) -> str:
    owners = {*organizations, *(r.split("/", 1)[0] for r in repositories)}
    return owners.pop() if kind == TokenKind.BUILD and len(owners) == 1 else ""


@transaction.atomic
def token_create(*, name: str, kind: str, actor=None, queues: list[str] = (), repositories: list[str] = (),
                 organizations: list[str] = (), user=None, expires_at: datetime | None = None,
                 known_queues: set[str] | None = None) -> tuple[ApiToken, str]:
    """Mint a token of exactly one kind; returns it and its secret (shown once)."""
    name = name.strip()
    if not name or len(name) > 100:
        raise Refused("a token needs a name of 1-100 characters")
    if ApiToken.objects.filter(name=name).exists():
        raise Refused(f"a token named {name!r} already exists")
    queues, repositories, organizations = list(queues), list(repositories), list(organizations)
    if kind == TokenKind.WORKER:
        if not queues or repositories or organizations or user:
            raise Refused("a worker token is bound to one or more queues, and nothing else")
        unknown = sorted(set(queues) - known_queues) if known_queues is not None else []
        if unknown:
            raise Refused(f"unknown queue {unknown[0]!r}; known queues: {', '.join(sorted(known_queues)) or 'none'}")
    elif kind == TokenKind.BUILD:
        if not (repositories or organizations) or queues or user:
            raise Refused("a build token is bound to repositories (owner/name) or organizations, and nothing else")
        for slug in repositories:
            org, repository = parse_scope(slug)
            if not repository:
                raise Refused(f"{slug!r} is not owner/name")
        for org_name in organizations:
            organization_named(org_name)
    elif kind == TokenKind.PERSONAL:
        if user is None or queues or repositories or organizations:
            raise Refused("a personal token belongs to one user, and has no other scope")
    else:
        raise Refused(f"unknown token kind {kind!r}; use worker, build or personal")
    token, secret = ApiToken.mint(name=name, kind=kind, created_by=actor if actor and actor.is_authenticated
                                  else None, queues=queues, repositories=repositories,
                                  organizations=organizations, user=user, expires_at=expires_at)
    audit.record(actor, "token.create", organization=_organization_of(kind, organizations, repositories),
                 target=f"token {name}", detail=f"{kind}: {token.scope_label}")
    return token, secret


def token_revoke(*, token: ApiToken, actor=None) -> None:
    if not _revoke_token(token):
        raise Refused(f"token {token.name!r} is already revoked")
    audit.record(actor, "token.revoke", organization=_organization_of(token.kind, token.organizations,
                                                                      token.repositories),
                 target=f"token {token.name}", detail=f"{token.kind}: {token.scope_label}")


def tokens_managed_by(user) -> list[ApiToken]:
    """Live or revoked tokens a user may see and revoke in the UI: their own personal tokens, build tokens of
    organizations they administer and their members' personal tokens; staff also worker and legacy tokens."""
    access = permissions.access_for(user)
    admin_of = {o for o, r in access.organizations.items() if RANK[r] >= RANK[Role.ADMIN]}
    member_ids = set(Membership.objects.filter(organization__name__in=admin_of).values_list("user_id", flat=True))
    tokens = []
    for token in ApiToken.objects.select_related("user", "created_by"):
        if token.kind == TokenKind.PERSONAL and (token.user_id == user.pk or token.user_id in member_ids):
            tokens.append(token)
        elif token.kind == TokenKind.BUILD and any(token.concerns_organization(o) for o in admin_of):
            tokens.append(token)
        elif token.kind in (TokenKind.WORKER, TokenKind.LEGACY) and user.is_staff:
            tokens.append(token)
    return tokens
