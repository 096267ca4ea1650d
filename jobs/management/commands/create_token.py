from django.core.management.base import BaseCommand, CommandError

from jobs.models import ApiToken


class Command(BaseCommand):
    help = "Mint a worker API token. The secret is printed once; only its hash is stored."

    def add_arguments(self, parser):
        parser.add_argument("name")

    def handle(self, *args, name: str, **options):
        if ApiToken.objects.filter(name=name).exists():
            raise CommandError(f"a token named {name!r} already exists")
        _, secret = ApiToken.mint(name)
        self.stdout.write(secret)
