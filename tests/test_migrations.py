"""Upgrades keep an existing installation's rows: the fleet's move from jobs/ to fleet/ (no copy, no loss),
and API tokens moving to accounts/ when tokens got kinds (old tokens keep working as legacy tokens)."""

import hashlib

import pytest
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from accounts import tokens
from accounts.models import ApiToken, Organization
from fleet.models import Alert, AlertNotification, Worker, WorkerError, WorkerVersionChange
from jobs.models import Repository

BEFORE = [("jobs", "0003_alert_window_indexes"), ("fleet", None)]
BEFORE_ACCOUNTS = [("jobs", "0004_fleet_moves_to_its_own_app"), ("accounts", None)]


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


@pytest.mark.django_db(transaction=True)
def test_tokens_minted_before_kinds_keep_working_as_legacy_tokens_after_the_upgrade():
    old = _migrate(BEFORE_ACCOUNTS).loader.project_state(BEFORE_ACCOUNTS[:1]).apps
    OldToken = old.get_model("jobs", "ApiToken")
    for name, secret, revoked in (("fleet", "bb_still-in-use", False), ("gone", "bb_revoked-long-ago", True)):
        OldToken.objects.create(name=name, prefix=secret[:10], revoked=revoked,
                                hashed_secret=hashlib.sha256(secret.encode()).hexdigest())
    old.get_model("jobs", "Repository").objects.create(owner="octo", name="kettle", private=True)

    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    token = tokens.authenticate("bb_still-in-use")
    assert (token.name, token.kind) == ("fleet", "legacy")
    assert tokens.authenticate("bb_revoked-long-ago") is None
    assert ApiToken.objects.get(name="gone").revoked_at is not None
    # Every owner becomes an organization without members, so nothing private becomes visible to anyone new.
    assert not Organization.objects.get(name="octo").memberships.exists()
    assert len(Repository.objects.get(owner="octo").badge_token) >= 20

    # And back: the tokens return to jobs (moved, not copied), so migrating forward again meets each once.
    _migrate([("jobs", "0004_fleet_moves_to_its_own_app"), ("accounts", "0001_initial")])
    assert OldToken.objects.count() == 2 and not ApiToken.objects.exists()
    _migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
    assert ApiToken.objects.filter(kind="legacy").count() == 2
