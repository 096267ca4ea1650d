"""Existing API tokens become `legacy` tokens, which keep every power a token had before scopes, so running
installations keep working until staff narrow them (README: "Narrowing old tokens"). Every repository
owner becomes an organization, without members: nothing private becomes visible to anyone new."""

from django.db import migrations
from django.utils import timezone


def forward(apps, schema_editor):
    OldToken = apps.get_model("jobs", "ApiToken")
    ApiToken = apps.get_model("accounts", "ApiToken")
    Organization = apps.get_model("accounts", "Organization")
    Repository = apps.get_model("jobs", "Repository")
    now = timezone.now()
    for old in OldToken.objects.all():
        ApiToken.objects.create(name=old.name, kind="legacy", prefix=old.prefix, hashed_secret=old.hashed_secret,
                                created_at=old.created_at, last_used_at=old.last_used_at,
                                revoked_at=now if old.revoked else None)
    for owner in Repository.objects.values_list("owner", flat=True).distinct():
        Organization.objects.get_or_create(name=owner)


def backward(apps, schema_editor):
    """Legacy tokens move back (not copied: migrating forward again would meet them twice)."""
    OldToken = apps.get_model("jobs", "ApiToken")
    ApiToken = apps.get_model("accounts", "ApiToken")
    for token in ApiToken.objects.filter(kind="legacy"):
        OldToken.objects.create(name=token.name, prefix=token.prefix, hashed_secret=token.hashed_secret,
                                created_at=token.created_at, last_used_at=token.last_used_at,
                                revoked=token.revoked_at is not None)
        token.delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0001_initial"),
        ("jobs", "0004_fleet_moves_to_its_own_app"),
    ]

    operations = [migrations.RunPython(forward, backward)]
