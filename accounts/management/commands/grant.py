from django.core.management.base import BaseCommand, CommandError

from accounts.services import Refused, parse_role, parse_scope, role_grant, user_named


class Command(BaseCommand):
    help = "Grant USERNAME a role (read, operate or admin) over an organization (owner) or a repository (owner/name)."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("scope", help="owner or owner/name")
        parser.add_argument("role", help="read, operate or admin")

    def handle(self, *args, username, scope, role, **options):
        try:
            role = parse_role(role)
            user = user_named(username)
            org, repository = parse_scope(scope)
            role_grant(organization=org, repository=repository, role=role, user=user)
        except Refused as e:
            raise CommandError(e.message) from None
        self.stdout.write(f"{username} now holds {role} on {scope}")
