"""The one place that decides who may see and do what: people through their roles, tokens through their scope.

Views, the worker API, websocket consumers and badges all ask here; nothing else compares roles.
A repository is anything with `owner`, `name` and `private` (jobs.Repository, or a frame's fields).
Public repositories are readable by anyone; staff may read everything but gain no other role."""

from dataclasses import dataclass, field

from django.db.models import Q

from .models import RANK, ApiToken, Grant, Role, TokenKind, stronger


@dataclass
class Access:
    """What one user holds, read in one query: enough to filter a stream of frames without another."""

    staff: bool = False
    organizations: dict[str, str] = field(default_factory=dict)  # org name -> role over all its repositories
    repositories: dict[tuple[str, str], str] = field(default_factory=dict)  # (owner, name) -> role

    def role(self, owner: str, name: str) -> str | None:
        """The role granted over owner/name, ignoring the implicit read of public repositories."""
        return stronger(self.organizations.get(owner), self.repositories.get((owner, name)))

    def may_read(self, owner: str, name: str, private: bool) -> bool:
        return not private or self.staff or self.role(owner, name) is not None

    def may(self, role: str, owner: str, name: str) -> bool:
        return RANK[self.role(owner, name)] >= RANK[role]

    def repository_q(self, prefix: str = "") -> Q:
        """A filter for the repositories readable with this access (prefix: the path to Repository)."""
        if self.staff:
            return Q()
        q = Q(**{f"{prefix}private": False})
        if self.organizations:
            q |= Q(**{f"{prefix}owner__in": sorted(self.organizations)})
        for owner, name in sorted(self.repositories):
            q |= Q(**{f"{prefix}owner": owner, f"{prefix}name": name})
        return q


ANONYMOUS = Access()


def access_for(user) -> Access:
    """The user's access, read once per request (memoised on the user object)."""
    if user is None or not user.is_authenticated or not user.is_active:
        return ANONYMOUS
    cached = getattr(user, "_bb_access", None)
    if cached is not None:
        return cached
    access = Access(staff=user.is_staff)
    rows = (Grant.objects.filter(Q(user=user) | Q(team__members=user))
            .values_list("organization__name", "repository", "role"))
    for owner, repository, role in rows:
        if repository:
            access.repositories[(owner, repository)] = stronger(access.repositories.get((owner, repository)), role)
        else:
            access.organizations[owner] = stronger(access.organizations.get(owner), role)
    user._bb_access = access
    return access


def forget_access(user) -> None:
    """Drop the memoised access after the user's grants changed within this request."""
    if user is not None and hasattr(user, "_bb_access"):
        del user._bb_access


def repositories_visible_to(user, prefix: str = "") -> Q:
    return access_for(user).repository_q(prefix)


def role_for(user, repository) -> str | None:
    """The user's role over a repository: a granted role, else read where it is public or the user is staff."""
    access = access_for(user)
    role = access.role(repository.owner, repository.name)
    if role is None and access.may_read(repository.owner, repository.name, repository.private):
        return Role.READ
    return role


def can_read(user, repository) -> bool:
    return access_for(user).may_read(repository.owner, repository.name, repository.private)


def can_operate(user, repository) -> bool:
    """Cancel and restart: an operate or admin role. Staff gain no role implicitly."""
    return access_for(user).may(Role.OPERATE, repository.owner, repository.name)


def can_admin_repository(user, repository) -> bool:
    return access_for(user).may(Role.ADMIN, repository.owner, repository.name)


def can_admin_organization(user, organization: str) -> bool:
    return RANK[access_for(user).organizations.get(organization)] >= RANK[Role.ADMIN]


def is_member(user, organization) -> bool:
    return bool(user.is_authenticated and organization.memberships.filter(user=user).exists())


def may_operate_fleet(principal) -> bool:
    """Fleet rollouts, drains and alerts: staff users, or a personal token of a staff user."""
    if isinstance(principal, ApiToken):
        return principal.kind == TokenKind.PERSONAL and principal.user is not None and principal.user.is_staff \
            and principal.user.is_active
    return bool(principal is not None and principal.is_authenticated and principal.is_active and principal.is_staff)


# ---------------------------------------------------------------------------------------------------
# Tokens. "See" decides 404 against 403 exactly as for people: a token that cannot read a job and cannot
# report for it does not learn that it exists.


def _build_scope_covers(token: ApiToken, owner: str, name: str) -> bool:
    return owner in token.organizations or f"{owner}/{name}" in token.repositories


def token_may_create_build(token: ApiToken, owner: str, name: str) -> bool:
    if token.kind == TokenKind.LEGACY:
        return True
    return token.kind == TokenKind.BUILD and _build_scope_covers(token, owner, name)


def token_may_report(token: ApiToken, *, queue: str, owner: str, name: str) -> bool:
    """States and log parts for a job."""
    if token.kind == TokenKind.LEGACY:
        return True
    if token.kind == TokenKind.WORKER:
        return queue in token.queues
    if token.kind == TokenKind.BUILD:
        return _build_scope_covers(token, owner, name)
    return False


def token_may_heartbeat(token: ApiToken, queue: str) -> bool:
    return token.kind == TokenKind.LEGACY or (token.kind == TokenKind.WORKER and queue in token.queues)


def token_may_read(token: ApiToken, repository) -> bool:
    """Jobs and logs: a personal token reads as its user; a build token its repositories; a worker nothing."""
    if token.kind == TokenKind.LEGACY:
        return True
    if token.kind == TokenKind.PERSONAL:
        return token.user is not None and can_read(token.user, repository)
    if token.kind == TokenKind.BUILD:
        return not repository.private or _build_scope_covers(token, repository.owner, repository.name)
    return not repository.private


def token_may_operate(token: ApiToken, repository) -> bool:
    if token.kind == TokenKind.LEGACY:
        return True
    return token.kind == TokenKind.PERSONAL and token.user is not None and can_operate(token.user, repository)
