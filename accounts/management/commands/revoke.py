from django.core.management.base import BaseCommand, CommandError

from accounts.services import Refused, parse_scope, role_revoke, user_named


class Command(BaseCommand):
    help = "Take back USERNAME's role over an organization (owner) or a repository (owner/name)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("scope", help="owner or owner/name")

    def handle(self, *args, username, scope, **options):
        try:
            user = user_named(username)
            org, repository = parse_scope(scope)
            role_revoke(organization=org, repository=repository, user=user)
        except Refused as e:
            raise CommandError(e.message) from None
        self.stdout.write(f"{username} no longer holds a role on {scope}")
