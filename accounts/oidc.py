"""OpenID Connect sign-in (mozilla-django-oidc): people are matched by verified email, new ones get an
account named after their preferred username, and the provider's groups decide their SSO-mapped teams."""

import re

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction
from mozilla_django_oidc.auth import OIDCAuthenticationBackend

from . import audit
from .live import announce_access_changed
from .models import Membership, Team

USERNAME_UNSAFE = re.compile(r"[^\w.@+-]")


class Backend(OIDCAuthenticationBackend):
    def verify_claims(self, claims: dict) -> bool:
        # Accounts are matched by email, so only an address the provider vouches for may sign anyone in.
        return bool(claims.get("email")) and claims.get("email_verified") is True

    def get_username(self, claims: dict) -> str:
        base = USERNAME_UNSAFE.sub("", claims.get("preferred_username") or claims["email"].split("@")[0])[:140]
        base = base or "user"
        users = get_user_model().objects
        username, n = base, 1
        while users.filter(username=username).exists():
            n += 1
            username = f"{base}{n}"
        return username

    def create_user(self, claims: dict):
        user = super().create_user(claims)
        user.set_unusable_password()
        user.first_name = (claims.get("name") or "")[:150]
        user.save()
        sync_teams(user, claims.get(settings.OIDC_GROUPS_CLAIM))
        return user

    def update_user(self, user, claims: dict):
        sync_teams(user, claims.get(settings.OIDC_GROUPS_CLAIM))
        return user


@transaction.atomic
def sync_teams(user, groups) -> None:
    """Put the user in every team mapped to one of their groups, and out of mapped teams they left."""
    if not isinstance(groups, list):
        return
    groups = {g for g in groups if isinstance(g, str)}
    for team in Team.objects.exclude(sso_groups="").select_related("organization"):
        wanted = bool(team.group_names() & groups)
        present = team.members.filter(pk=user.pk).exists()
        if wanted and not present:
            Membership.objects.get_or_create(organization=team.organization, user=user)
            team.members.add(user)
            audit.record(None, "team.add", organization=team.organization.name, target=user.get_username(),
                         detail=f"to team {team.name} (single sign-on groups)")
            announce_access_changed([user.pk])
        elif present and not wanted:
            team.members.remove(user)
            audit.record(None, "team.remove", organization=team.organization.name, target=user.get_username(),
                         detail=f"from team {team.name} (single sign-on groups)")
            announce_access_changed([user.pk])
