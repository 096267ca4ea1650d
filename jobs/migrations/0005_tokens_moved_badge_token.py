"""API tokens now live in accounts (copied there by accounts 0002); repositories get a badge token each."""

import secrets

from django.db import migrations, models

import jobs.models


def fill_badge_tokens(apps, schema_editor):
    Repository = apps.get_model("jobs", "Repository")
    for repo in Repository.objects.all():
        repo.badge_token = secrets.token_urlsafe(18)
        repo.save(update_fields=["badge_token"])


class Migration(migrations.Migration):
    dependencies = [
        ("jobs", "0004_fleet_moves_to_its_own_app"),
        ("accounts", "0002_from_jobs"),
    ]

    operations = [
        migrations.DeleteModel(name="ApiToken"),
        migrations.AddField(model_name="repository", name="badge_token",
                            field=models.CharField(default=jobs.models.new_badge_token, max_length=32)),
        migrations.RunPython(fill_badge_tokens, migrations.RunPython.noop),
    ]
