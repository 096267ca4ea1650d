"""The fleet's move from jobs/ to fleet/ keeps an existing installation's rows: no copy, no loss."""

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from fleet.models import Alert, AlertNotification, Worker, WorkerError, WorkerVersionChange

BEFORE = [("jobs", "0003_alert_window_indexes"), ("fleet", None)]


def _migrate(targets) -> MigrationExecutor:
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor


@pytest.mark.django_db(transaction=True)
def test_fleet_rows_written_before_the_move_are_read_by_the_fleet_app_after_it():
    old = _migrate(BEFORE).loader.project_state(BEFORE[:1]).apps
    now = timezone.now()
    worker = old.get_model("jobs", "Worker").objects.create(name="ec2-worker-17", queue="builds.linux",
                                                            version="v2.5.0", state="in_service")
    old.get_model("jobs", "WorkerVersionChange").objects.create(worker=worker, from_version="v2.4.0",
                                                                to_version="v2.5.0")
    signature = old.get_model("jobs", "ErrorSignature").objects.create(
        queue="builds.linux", digest="d" * 64, signature="manifest not found", count=1, first_seen_at=now,
        last_seen_at=now)
    old.get_model("jobs", "WorkerError").objects.create(signature=signature, worker=worker, at=now,
                                                        message="manifest not found")
    alert = old.get_model("jobs", "Alert").objects.create(rule="capacity_low", subject="builds.linux", title="t")
    old.get_model("jobs", "AlertNotification").objects.create(alert=alert, channel="email", event="firing")
    ContentType.objects.clear_cache()
    worker_type = ContentType.objects.get_or_create(app_label="jobs", model="worker")[0].pk

    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    fresh = MigrationExecutor(connection)
    assert not fresh.migration_plan(fresh.loader.graph.leaf_nodes())  # fully migrated again

    moved = Worker.objects.get()
    assert (moved.pk, moved.name, moved.version) == (worker.pk, "ec2-worker-17", "v2.5.0")
    assert WorkerVersionChange.objects.get().worker == moved
    assert WorkerError.objects.get().signature.signature == "manifest not found"
    assert AlertNotification.objects.get().alert == Alert.objects.get(pk=alert.pk)
    # Permissions and admin history follow the content type, which now belongs to the fleet app.
    ContentType.objects.clear_cache()
    assert ContentType.objects.get(pk=worker_type).app_label == "fleet"
    assert Worker.objects.create(name="new", queue="q", version="v1").pk > moved.pk  # the id sequence goes on
