from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from accounts.services import Refused, organization_create


class Command(BaseCommand):
    help = "Create an organization (the owner in owner/name)."

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--private", action="store_true", help="repositories its builds create start private")

    def handle(self, *args, name, private, **options):
        if Organization.objects.filter(name=name).exists():
            raise CommandError(f"organization {name!r} already exists")
        try:
            org = organization_create(name=name)
        except Refused as e:
            raise CommandError(e.message) from None
        org.new_repositories_private = private
        org.save(update_fields=["new_repositories_private"])
        self.stdout.write(f"created {name}")
