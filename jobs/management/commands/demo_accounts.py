"""The demo's people and tokens: an organization with a private repository, a team, a developer, and scoped
tokens for the simulated workers. Idempotent; prints one JSON object with the secrets for ./bb run."""

import json
import secrets
import time

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from accounts.models import Organization, Role, TokenKind
from accounts.services import organization_create, role_grant, team_create, team_member_add, token_create
from jobs.models import DEFAULT_QUEUE, Repository

ORG = "acme"
PRIVATE_REPOSITORY = "widgets"
TEAM = "developers"
DEVELOPER = "developer"
# The owners of the demo fleet's repositories (devtools.simulator.REPOSITORIES, which the running service may
# not import; tests/test_accounts.py checks that they agree): the demo build token creates builds in each.
DEMO_OWNERS = ("acme", "octo")
# A staff user whose personal token the demo fleet uses to start staged rollouts (fleet/rollouts.py); it has no
# password, so nobody signs in as it.
RELEASE_MANAGER = "release-manager"


class Command(BaseCommand):
    help = "Set up the demo organization, team, developer and scoped tokens; print their secrets as JSON."

    def add_arguments(self, parser):
        parser.add_argument("--password", default=None, help="the developer's password; default: a fresh one")

    def handle(self, *args, password, **options):
        org = organization_create(name=ORG)
        Repository.objects.update_or_create(owner=ORG, name=PRIVATE_REPOSITORY, defaults={"private": True})
        password = password or secrets.token_urlsafe(12)
        user, _ = get_user_model().objects.get_or_create(username=DEVELOPER)
        user.is_staff = False
        user.set_password(password)
        user.save()
        team = org.teams.filter(name=TEAM).first() or team_create(organization=org, name=TEAM)
        team_member_add(team=team, user=user)
        role_grant(organization=org, repository="", role=Role.OPERATE, team=team)
        owners = sorted(DEMO_OWNERS)
        for owner in owners:
            Organization.objects.get_or_create(name=owner)
        stamp = time.time_ns()  # a fresh name per start, however quick the restart
        _, build = token_create(name=f"demo-builds-{stamp}", kind=TokenKind.BUILD, organizations=owners)
        _, worker = token_create(name=f"demo-workers-{stamp}", kind=TokenKind.WORKER, queues=[DEFAULT_QUEUE])
        manager, _ = get_user_model().objects.get_or_create(username=RELEASE_MANAGER)
        manager.is_staff, manager.is_active = True, True
        manager.set_unusable_password()
        manager.save()
        _, operator = token_create(name=f"demo-rollouts-{stamp}", kind=TokenKind.PERSONAL, user=manager)
        self.stdout.write(json.dumps({"developer": DEVELOPER, "password": password, "organization": ORG,
                                      "private_repository": f"{ORG}/{PRIVATE_REPOSITORY}", "team": TEAM,
                                      "build_token": build, "worker_token": worker, "operator_token": operator}))
