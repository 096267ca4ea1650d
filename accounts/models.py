"""Organizations (the `owner` of owner/name), their members and teams, role grants, API tokens, audit log.

Repositories are named by strings here (an organization and a repository name), never by a foreign key
into jobs/: a grant or a build token can name a repository before its first build creates it, and this
app stays below jobs/ (jobs imports accounts, never the other way round)."""

import hashlib
import re
import secrets
from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")


class Role(models.TextChoices):
    READ = "read", "read: see builds, jobs and logs"
    OPERATE = "operate", "operate: read, plus cancel and restart"
    ADMIN = "admin", "admin: operate, plus manage settings, members and tokens"


RANK = {None: 0, Role.READ: 1, Role.OPERATE: 2, Role.ADMIN: 3}


def stronger(a: str | None, b: str | None) -> str | None:
    return a if RANK[a] >= RANK[b] else b


class Organization(models.Model):
    name = models.CharField(max_length=100, unique=True, help_text="The owner part of owner/name.")
    new_repositories_private = models.BooleanField(
        default=False, help_text="Repositories that a build creates in this organization start private.")
    created_at = models.DateTimeField(default=timezone.now)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="organizations")

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def get_absolute_url(self) -> str:
        return reverse("orgs-detail", args=[self.name])

    def admins(self):
        """Users holding admin over the whole organization, directly or through a team."""
        from django.contrib.auth import get_user_model

        grants = Grant.objects.filter(organization=self, repository="", role=Role.ADMIN)
        return get_user_model().objects.filter(
            Q(pk__in=grants.filter(user__isnull=False).values("user"))
            | Q(pk__in=grants.filter(team__isnull=False).values("team__members")),
            is_active=True,
        ).distinct()


class Membership(models.Model):
    organization = models.ForeignKey(Organization, models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, related_name="memberships")
    joined_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "user"], name="membership_unique")]
        ordering = ["organization", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} in {self.organization}"


class Team(models.Model):
    organization = models.ForeignKey(Organization, models.CASCADE, related_name="teams")
    name = models.CharField(max_length=100)
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, related_name="teams", blank=True)
    # Members of these OpenID Connect groups join the team when they sign in (comma-separated).
    sso_groups = models.CharField(max_length=500, blank=True, help_text="OpenID Connect groups, comma-separated.")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["organization", "name"], name="team_unique_name")]
        ordering = ["organization", "name"]

    def __str__(self) -> str:
        return f"{self.organization}/{self.name}"

    def get_absolute_url(self) -> str:
        return reverse("orgs-team", args=[self.organization.name, self.name])

    def group_names(self) -> set[str]:
        return {g.strip() for g in self.sso_groups.split(",") if g.strip()}


class Grant(models.Model):
    """A role for a user or a team, over a whole organization (repository "") or one repository of it."""

    organization = models.ForeignKey(Organization, models.CASCADE, related_name="grants")
    repository = models.CharField(max_length=100, blank=True, help_text="A repository name; empty: all.")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, null=True, blank=True, related_name="grants")
    team = models.ForeignKey(Team, models.CASCADE, null=True, blank=True, related_name="grants")
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(user__isnull=False, team__isnull=True)
                                   | Q(user__isnull=True, team__isnull=False), name="grant_user_xor_team"),
            models.UniqueConstraint(fields=["organization", "repository", "user"], condition=Q(user__isnull=False),
                                    name="grant_unique_user"),
            models.UniqueConstraint(fields=["organization", "repository", "team"], condition=Q(team__isnull=False),
                                    name="grant_unique_team"),
        ]
        ordering = ["organization", "repository", "id"]

    def __str__(self) -> str:
        return f"{self.grantee_label} {self.role} on {self.scope_label}"

    @property
    def scope_label(self) -> str:
        return f"{self.organization.name}/{self.repository}" if self.repository else self.organization.name

    @property
    def grantee_label(self) -> str:
        return f"team {self.team.name}" if self.team_id else self.user.get_username()


# ---------------------------------------------------------------------------------------------------
# API tokens


class TokenKind(models.TextChoices):
    WORKER = "worker", "worker: reports for jobs on its queues, heartbeats for them"
    BUILD = "build", "build: creates builds in its repositories and reports for their jobs"
    PERSONAL = "personal", "personal: reads what its user may read, operates where the user may"
    # Tokens minted before scopes existed keep working as they did; none can be minted any more.
    LEGACY = "legacy", "legacy: unscoped, from before token kinds (narrow it, see the README)"


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class ApiToken(models.Model):
    name = models.CharField(max_length=100, unique=True)
    kind = models.CharField(max_length=16, choices=TokenKind.choices)
    prefix = models.CharField(max_length=12, help_text="The first characters, to recognise a token.")
    hashed_secret = models.CharField(max_length=64, unique=True, editable=False)
    queues = models.JSONField(default=list, blank=True, help_text="worker tokens: the queues it serves")
    repositories = models.JSONField(default=list, blank=True, help_text="build tokens: owner/name slugs")
    organizations = models.JSONField(default=list, blank=True, help_text="build tokens: whole organizations")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, models.CASCADE, null=True, blank=True,
                             related_name="api_tokens", help_text="personal tokens: whose")
    created_at = models.DateTimeField(default=timezone.now)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True,
                                   related_name="+")
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(kind="personal", user__isnull=False)
                                   | (~Q(kind="personal") & Q(user__isnull=True)), name="apitoken_user_iff_personal"),
        ]
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.kind}, {self.prefix}…)"

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None

    def is_live(self, now: datetime | None = None) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > (now or timezone.now()))

    @property
    def scope_label(self) -> str:
        if self.kind == TokenKind.WORKER:
            return "queues " + ", ".join(self.queues)
        if self.kind == TokenKind.BUILD:
            return ", ".join([*(f"{o}/*" for o in self.organizations), *self.repositories])
        if self.kind == TokenKind.PERSONAL:
            return f"user {self.user.get_username()}" if self.user_id else "user"
        return "everything (legacy)"

    def concerns_organization(self, organization: str) -> bool:
        """Whether an organization's admins manage this token: a build token naming it, a personal token of
        one of its members is decided by the caller."""
        return organization in self.organizations or any(r.split("/", 1)[0] == organization
                                                          for r in self.repositories)

    @classmethod
    def mint(cls, *, name: str, kind: str, created_by=None, **scope) -> tuple["ApiToken", str]:
        """Create a token; the secret is returned once and only its hash is kept."""
        secret = "bb_" + secrets.token_urlsafe(30)
        token = cls.objects.create(name=name, kind=kind, prefix=secret[:10], hashed_secret=hash_secret(secret),
                                   created_by=created_by, **scope)
        return token, secret


class AuditEntry(models.Model):
    """Who granted or revoked what, created or revoked which token, cancelled or restarted which job."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, models.SET_NULL, null=True, blank=True, related_name="+")
    actor_label = models.CharField(max_length=150, help_text="Who, as shown: a username or 'token NAME'.")
    organization = models.CharField(max_length=100, blank=True, db_index=True, help_text="Empty: site-wide.")
    action = models.CharField(max_length=32)
    target = models.CharField(max_length=255)
    detail = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name_plural = "audit entries"

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_label} {self.action} {self.target}"
