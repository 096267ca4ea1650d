from django.core.management.base import BaseCommand, CommandError

from accounts.models import ApiToken
from accounts.services import Refused, token_revoke


class Command(BaseCommand):
    help = "Revoke an API token by name; every web process refuses it within a second."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name, **options):
        token = ApiToken.objects.filter(name=name).first()
        if token is None:
            raise CommandError(f"unknown token {name!r}")
        try:
            token_revoke(token=token)
        except Refused as e:
            raise CommandError(e.message) from None
        self.stdout.write(f"revoked {name}")
