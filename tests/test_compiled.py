"""Querysets compiled once (buildboard/lib/compiled.py): the same rows and writes as the ORM's own calls."""

from datetime import UTC, datetime

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.models import F
from django.db.models.signals import pre_save
from django.test.utils import CaptureQueriesContext

from buildboard.lib import compiled
from jobs.models import Job, LogPart

pytestmark = pytest.mark.django_db


def fields(obj) -> dict:
    return {f.attname: getattr(obj, f.attname) for f in type(obj)._meta.concrete_fields}


def test_a_compiled_model_query_gives_the_instance_the_orm_gives_with_converted_values(job):
    Job.objects.filter(pk=job.pk).update(config={"os": "linux", "steps": [1, 2]},
                                         started_at=datetime(2026, 3, 1, 12, tzinfo=UTC))
    by_pk = compiled.Compiled(Job, lambda pk: Job.objects.filter(pk=pk), 1)

    found = by_pk(job.pk)

    assert len(found) == 1 and isinstance(found[0], Job)
    assert fields(found[0]) == fields(Job.objects.get(pk=job.pk))
    assert found[0].config == {"os": "linux", "steps": [1, 2]}  # JSON decoded, as the ORM does
    assert found[0].started_at == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert found[0]._state.adding is False and found[0]._state.db == "default"
    assert by_pk(job.pk + 1000) == []


def test_values_land_in_their_own_parameters_whatever_order_the_sql_puts_them_in(make_build):
    first, second = make_build(jobs=2).jobs.order_by("pk")
    for job, attempt, numbers in ((first, 1, range(6)), (first, 2, range(3)), (second, 1, range(8))):
        LogPart.objects.bulk_create([LogPart(job=job, attempt=attempt, number=n, content="x") for n in numbers])
    # Django orders a filter's keyword arguments by name; the lambda's are in another order.
    beyond = compiled.Compiled(LogPart, lambda job_id, attempt, after: LogPart.objects.filter(
        job_id=job_id, attempt=attempt, number__gt=after).values_list("number", flat=True), 3)
    pairs = compiled.Compiled(LogPart, lambda after, job_id: LogPart.objects.filter(
        number__gt=after, job_id=job_id).order_by("attempt", "number").values_list("attempt", "number"), 2)

    assert sorted(beyond(first.pk, 1, 3)) == [4, 5]
    assert sorted(beyond(first.pk, 2, 0)) == [1, 2]
    assert sorted(beyond(second.pk, 1, 5)) == [6, 7]
    assert pairs(4, first.pk) == [(1, 5)]
    assert pairs(1, first.pk) == [(1, 2), (1, 3), (1, 4), (1, 5), (2, 2)]


def test_a_locking_query_keeps_its_for_update(job):
    lock = compiled.Compiled(Job, lambda pk: Job.objects.select_for_update().filter(pk=pk), 1, write=True)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        assert lock(job.pk)[0].pk == job.pk
    locking = [q["sql"] for q in queries.captured_queries if "jobs_job" in q["sql"]]
    assert locking and all(("FOR UPDATE" in sql) == connection.features.has_select_for_update for sql in locking)


def test_a_queryset_with_a_parameter_of_its_own_is_refused():
    with_constant = compiled.Compiled(LogPart, lambda after: LogPart.objects.filter(attempt=1, number__gt=after), 1)
    with pytest.raises(ValueError, match="not its values once each"):
        with_constant(3)
    with pytest.raises(TypeError, match="expected 1 values, got 2"):
        with_constant(3, 4)


def test_update_fields_writes_only_the_named_fields(job):
    Job.objects.filter(pk=job.pk).update(worker="w-7")  # written meanwhile by someone else
    job.log_bytes, job.seq, job.worker = 512, job.seq + 4, "stale"
    job.last_activity_at = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)

    compiled.update_fields(job, ["log_bytes", "seq", "last_activity_at"])

    stored = Job.objects.get(pk=job.pk)
    assert (stored.log_bytes, stored.seq, stored.worker) == (512, job.seq, "w-7")
    assert stored.last_activity_at == datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)


def test_update_fields_of_a_deleted_row_fails_as_save_does(job):
    Job.objects.filter(pk=job.pk).delete()
    job.log_bytes = 1
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        compiled.update_fields(job, ["log_bytes"])


def test_update_fields_leaves_expressions_and_save_receivers_to_save(job):
    job.seq = F("seq") + 5
    before = Job.objects.get(pk=job.pk).seq
    compiled.update_fields(job, ["seq"])
    assert Job.objects.get(pk=job.pk).seq == before + 5

    heard = []

    def receiver(sender, instance, update_fields, **kwargs):
        heard.append(sorted(update_fields))

    pre_save.connect(receiver, sender=Job)
    try:
        job.log_bytes = 9
        compiled.update_fields(job, ["log_bytes"])
    finally:
        pre_save.disconnect(receiver, sender=Job)
    assert heard == [["log_bytes"]]
    assert Job.objects.get(pk=job.pk).log_bytes == 9
