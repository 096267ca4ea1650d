# The fleet models as they were in the jobs app, on the tables jobs created (jobs 0002 and 0003): this
# migration only records them in Django's state for the fleet app, so existing installations copy no data.

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models

MODELS = ["worker", "workerversionchange", "errorsignature", "workererror", "queuesettings", "alertrule", "alert",
          "alertnotification"]


def _move_content_types(apps, schema_editor, source: str, target: str) -> None:
    """Permissions and admin history point at content types; move those rows along with the models."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    if not ContentType.objects.using(db).filter(app_label=target, model__in=MODELS).exists():
        ContentType.objects.using(db).filter(app_label=source, model__in=MODELS).update(app_label=target)


def content_types_to_fleet(apps, schema_editor) -> None:
    _move_content_types(apps, schema_editor, "jobs", "fleet")


def content_types_to_jobs(apps, schema_editor) -> None:
    _move_content_types(apps, schema_editor, "fleet", "jobs")


class Migration(migrations.Migration):

    initial = True

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('jobs', '0004_fleet_moves_to_its_own_app'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.CreateModel(
                name='Worker',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('name', models.CharField(max_length=255, unique=True)),
                    ('queue', models.CharField(db_index=True, max_length=100)),
                    ('version', models.CharField(max_length=64)),
                    ('backend', models.CharField(blank=True, max_length=64)),
                    ('host', models.CharField(blank=True, max_length=255)),
                    ('pool_size', models.PositiveIntegerField(default=0)),
                    ('busy', models.PositiveIntegerField(default=0)),
                    ('state', models.CharField(choices=[('starting', 'Starting'), ('in_service', 'In Service'), ('draining', 'Draining'), ('stopped', 'Stopped')], default='starting', max_length=16)),
                    ('state_since', models.DateTimeField(default=django.utils.timezone.now)),
                    ('first_seen_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('last_seen_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                    ('drain_requested', models.BooleanField(default=False, help_text='Staff asked this one instance to drain.')),
                    ('heartbeats', models.PositiveBigIntegerField(default=0)),
                    ('seq', models.PositiveIntegerField(default=0)),
                ],
                options={
                    'db_table': 'jobs_worker',
                    'ordering': ['queue', 'name'],
                },
            ),
            migrations.CreateModel(
                name='Alert',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('rule', models.CharField(max_length=64)),
                    ('subject', models.CharField(max_length=255)),
                    ('state', models.CharField(choices=[('firing', 'Firing'), ('acknowledged', 'Acknowledged'), ('resolved', 'Resolved')], default='firing', max_length=16)),
                    ('title', models.CharField(max_length=255)),
                    ('summary', models.TextField(blank=True)),
                    ('evidence', models.JSONField(blank=True, default=dict)),
                    ('onset_at', models.DateTimeField(blank=True, help_text='When the evidence says the problem began.', null=True)),
                    ('fired_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('last_seen_at', models.DateTimeField(default=django.utils.timezone.now, help_text='Last evaluation that found the condition.')),
                    ('acknowledged_at', models.DateTimeField(blank=True, null=True)),
                    ('resolved_at', models.DateTimeField(blank=True, null=True)),
                    ('resolution', models.CharField(blank=True, max_length=255)),
                    ('incident_id', models.PositiveIntegerField(blank=True, help_text='The incident drafted from it.', null=True)),
                    ('incident_url', models.CharField(blank=True, max_length=500)),
                    ('acknowledged_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'jobs_alert',
                    'ordering': ['-fired_at', '-id'],
                },
            ),
            migrations.CreateModel(
                name='AlertNotification',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('channel', models.CharField(max_length=16)),
                    ('event', models.CharField(max_length=16)),
                    ('sent_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('alert', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='notifications', to='fleet.alert')),
                ],
                options={
                    'db_table': 'jobs_alertnotification',
                },
            ),
            migrations.CreateModel(
                name='AlertRule',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('kind', models.CharField(max_length=64, unique=True)),
                    ('enabled', models.BooleanField(default=True)),
                    ('params', models.JSONField(blank=True, default=dict, help_text="Overrides of the rule's default thresholds.")),
                    ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('updated_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'db_table': 'jobs_alertrule',
                    'ordering': ['kind'],
                },
            ),
            migrations.CreateModel(
                name='ErrorSignature',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('queue', models.CharField(max_length=100)),
                    ('digest', models.CharField(help_text='sha256 of the signature, for a short unique key.', max_length=64)),
                    ('signature', models.CharField(max_length=500)),
                    ('count', models.PositiveBigIntegerField(default=0)),
                    ('first_seen_at', models.DateTimeField()),
                    ('last_seen_at', models.DateTimeField(db_index=True)),
                    ('samples', models.JSONField(blank=True, default=list, help_text='The latest raw messages with worker and time.')),
                ],
                options={
                    'db_table': 'jobs_errorsignature',
                    'ordering': ['-last_seen_at'],
                    'constraints': [models.UniqueConstraint(fields=('queue', 'digest'), name='errorsignature_unique_digest')],
                },
            ),
            migrations.CreateModel(
                name='QueueSettings',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('queue', models.CharField(max_length=100, unique=True)),
                    ('desired_version', models.CharField(blank=True, max_length=64)),
                    ('desired_version_set_at', models.DateTimeField(blank=True, null=True)),
                    ('expected_capacity', models.PositiveIntegerField(default=0, help_text='Job slots in service; 0: no expectation.')),
                    ('drain', models.BooleanField(default=False)),
                    ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('updated_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ],
                options={
                    'verbose_name_plural': 'queue settings',
                    'db_table': 'jobs_queuesettings',
                    'ordering': ['queue'],
                },
            ),
            migrations.CreateModel(
                name='WorkerError',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('at', models.DateTimeField()),
                    ('message', models.CharField(max_length=2000)),
                    ('signature', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='occurrences', to='fleet.errorsignature')),
                    ('worker', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='errors', to='fleet.worker')),
                ],
                options={
                    'db_table': 'jobs_workererror',
                    'ordering': ['-at'],
                },
            ),
            migrations.CreateModel(
                name='WorkerVersionChange',
                fields=[
                    ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                    ('from_version', models.CharField(max_length=64)),
                    ('to_version', models.CharField(max_length=64)),
                    ('at', models.DateTimeField(default=django.utils.timezone.now)),
                    ('worker', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='version_changes', to='fleet.worker')),
                ],
                options={
                    'db_table': 'jobs_workerversionchange',
                    'ordering': ['-at', '-id'],
                },
            ),
            migrations.AddIndex(
                model_name='alert',
                index=models.Index(fields=['state', 'rule'], name='jobs_alert_state_91b08c_idx'),
            ),
            migrations.AddIndex(
                model_name='alert',
                index=models.Index(fields=['-fired_at'], name='jobs_alert_fired_a_ac8dd7_idx'),
            ),
            migrations.AddConstraint(
                model_name='alert',
                constraint=models.UniqueConstraint(condition=models.Q(('state__in', ['firing', 'acknowledged'])), fields=('rule', 'subject'), name='alert_one_open_per_rule_subject'),
            ),
            migrations.AddConstraint(
                model_name='alertnotification',
                constraint=models.UniqueConstraint(fields=('alert', 'channel', 'event'), name='alertnotification_once'),
            ),
            migrations.AddIndex(
                model_name='workererror',
                index=models.Index(fields=['signature', 'at'], name='jobs_worker_signatu_90b37b_idx'),
            ),
            migrations.AddIndex(
                model_name='workererror',
                index=models.Index(fields=['at'], name='workererror_at_idx'),
            ),
            migrations.AddConstraint(
                model_name='workererror',
                constraint=models.UniqueConstraint(fields=('worker', 'signature', 'at'), name='workererror_unique_occurrence'),
            ),
        ]),
        migrations.RunPython(content_types_to_fleet, content_types_to_jobs),
    ]
