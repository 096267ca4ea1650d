# The fleet models move to the fleet app (fleet/migrations/0001_initial.py) and keep their tables:
# the jobs app lets go of them in Django's migration state only, the database is not touched.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('jobs', '0003_alert_window_indexes'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(state_operations=[
            migrations.RemoveField(
                model_name='alertnotification',
                name='alert',
            ),
            migrations.RemoveField(
                model_name='alertrule',
                name='updated_by',
            ),
            migrations.RemoveField(
                model_name='workererror',
                name='signature',
            ),
            migrations.RemoveField(
                model_name='queuesettings',
                name='updated_by',
            ),
            migrations.RemoveField(
                model_name='workerversionchange',
                name='worker',
            ),
            migrations.RemoveField(
                model_name='workererror',
                name='worker',
            ),
            migrations.DeleteModel(
                name='Alert',
            ),
            migrations.DeleteModel(
                name='AlertNotification',
            ),
            migrations.DeleteModel(
                name='AlertRule',
            ),
            migrations.DeleteModel(
                name='ErrorSignature',
            ),
            migrations.DeleteModel(
                name='QueueSettings',
            ),
            migrations.DeleteModel(
                name='WorkerVersionChange',
            ),
            migrations.DeleteModel(
                name='Worker',
            ),
            migrations.DeleteModel(
                name='WorkerError',
            ),
        ]),
    ]
