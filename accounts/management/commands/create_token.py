from datetime import timedelta

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from accounts.models import TokenKind
from accounts.services import Refused, token_create, user_named
from fleet.queues import known_queues


class Command(BaseCommand):
    help = ("Mint an API token of one kind: a worker token (--queue), a build token (--repository or "
            "--organization) or a personal token (--user). Prints only the secret; only its hash is stored.")

    def add_arguments(self, parser):
        parser.add_argument("name")
        parser.add_argument("--queue", action="append", default=[], help="worker token: a queue it serves")
        parser.add_argument("--repository", action="append", default=[], help="build token: owner/name")
        parser.add_argument("--organization", action="append", default=[], help="build token: a whole owner")
        parser.add_argument("--user", help="personal token: the user it belongs to")
        parser.add_argument("--expires-days", type=int, default=None, help="expire after this many days")

    def handle(self, *args, name, queue, repository, organization, user, expires_days, **options):
        kinds = [k for k, given in ((TokenKind.WORKER, queue), (TokenKind.BUILD, repository or organization),
                                    (TokenKind.PERSONAL, user)) if given]
        if len(kinds) != 1:
            raise CommandError("give exactly one kind of scope: --queue Q ..., --repository owner/name ... / "
                               "--organization owner ..., or --user USERNAME")
        if expires_days is not None and expires_days < 1:
            raise CommandError("--expires-days must be at least 1")
        expires_at = timezone.now() + timedelta(days=expires_days) if expires_days else None
        try:
            _, secret = token_create(name=name, kind=kinds[0], queues=queue, repositories=repository,
                                     organizations=organization, user=user_named(user) if user else None,
                                     expires_at=expires_at, known_queues=known_queues() if queue else None)
        except Refused as e:
            raise CommandError(e.message) from None
        self.stdout.write(secret)
