"""Management commands an operator runs by hand."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from accounts import tokens
from accounts.models import ApiToken

pytestmark = pytest.mark.django_db


def test_create_token_prints_the_secret_once_and_stores_only_its_hash():
    out = StringIO()
    call_command("create_token", "fleet-1", "--queue", "builds.linux", stdout=out)
    secret = out.getvalue().strip()
    token = ApiToken.objects.get(name="fleet-1")
    assert secret.startswith("bb_") and len(secret) > 30
    assert secret not in token.hashed_secret and tokens.authenticate(secret) == token


def test_create_token_refuses_a_duplicate_name():
    call_command("create_token", "fleet-1", "--queue", "builds.linux", stdout=StringIO())
    with pytest.raises(CommandError, match="already exists"):
        call_command("create_token", "fleet-1", "--queue", "builds.linux", stdout=StringIO())


def test_seed_status_components_fills_an_empty_page_once():
    from incidents.models import Component

    call_command("seed_status_components", stdout=StringIO())
    count = Component.objects.count()
    assert count >= 3 and Component.objects.filter(queues__contains="builds.linux").exists()
    call_command("seed_status_components", stdout=StringIO())
    assert Component.objects.count() == count
