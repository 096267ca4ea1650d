import secrets

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.models import NAME
from accounts.services import Refused, organization_create, role_grant


class Command(BaseCommand):
    help = ("Create a (non-staff) user and print their password; with --admin-of, make them the admin of an "
            "organization, created if needed: how the first user of an organization is made.")

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--email", default="")
        parser.add_argument("--password", help="default: a generated one, printed")
        parser.add_argument("--admin-of", metavar="ORGANIZATION")

    def handle(self, *args, username, email, password, admin_of, **options):
        users = get_user_model().objects
        if users.filter(username=username).exists():
            raise CommandError(f"a user named {username!r} already exists")
        if admin_of and not NAME.fullmatch(admin_of):
            raise CommandError(f"{admin_of!r} is not an organization name")
        password = password or secrets.token_urlsafe(12)
        user = users.create_user(username, email=email, password=password)
        if admin_of:
            try:
                org = organization_create(name=admin_of)
                role_grant(organization=org, repository="", role="admin", user=user)
            except Refused as e:
                user.delete()
                raise CommandError(e.message) from None
        self.stdout.write(password)
