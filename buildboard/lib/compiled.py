"""Querysets compiled to SQL once per database and run again with new values: for hot loops only.

Django turns a queryset into SQL every time it runs it. For the log drain, which locks a job, reads the
part numbers already stored and saves the job on every round, compiling was most of the round's CPU:
locking the job took 1.2-1.5 ms of CPU through the ORM and 0.3 ms compiled once, and a round storing one
request 3.0-3.7 ms before, 1.3-1.6 ms after (measured in one process against PostgreSQL on this 2-core
machine kind).

Compiled keeps the SQL Django generates for a queryset (quoting, FOR UPDATE where the database has it,
LIMIT) and the converters it would apply to the rows, and swaps in new values for the parameters. The
queryset is built once per database with a distinct sentinel value for each parameter, so the values
land where Django put them; a queryset whose SQL holds any other parameter, or a sentinel twice, is
refused at that first use rather than run with values in the wrong places.

update_fields(obj, names) is Model.save(update_fields=names) with its UPDATE compiled once per model,
database and field list. Models with pre_save or post_save receivers take Model.save itself."""

import threading
from collections.abc import Callable, Iterator, Sequence
from itertools import count

from django.db import DatabaseError, connections, router
from django.db.models import Model, QuerySet, signals
from django.db.models.query import FlatValuesListIterable, ModelIterable, ValuesListIterable

# Each parameter of a compiled queryset gets its own value: positive and within a 32-bit column's range,
# because Django drops or empties a lookup on a value its field cannot hold (a negative one on a positive
# integer field, say). A constant in a queryset that equals one is refused as a parameter repeated.
_SENTINELS = count(2_000_000_000)
_lock = threading.Lock()


class Compiled:
    """build(*values) returns a queryset whose SQL parameters are exactly `values`, each once, of a type
    the fields pass through unchanged (integers for integer fields and keys). Calling the Compiled object
    with new values runs that SQL and returns the rows as the queryset would: model instances for a model
    queryset, tuples for values_list(), values for values_list(flat=True).

    Querysets that lock rows (select_for_update) must run, and are compiled, inside a transaction."""

    def __init__(self, model: type[Model], build: Callable[..., QuerySet], arity: int, write: bool = False) -> None:
        """write: route as a write (a queryset that locks rows), else as a read."""
        self.model, self.build, self.arity, self.write = model, build, arity, write
        self._by_alias: dict[str, tuple] = {}

    def _compile(self, alias: str) -> tuple:
        sentinels = [next(_SENTINELS) for _ in range(self.arity)]
        queryset = self.build(*sentinels).using(alias)
        compiler = queryset.query.get_compiler(alias)
        sql, params = compiler.as_sql()
        if sorted(params) != sorted(sentinels):
            raise ValueError(f"cannot compile a queryset whose parameters {params!r} are not its values once each")
        order = [sentinels.index(param) for param in params]
        columns = [column for column, _, _ in compiler.select[:compiler.col_count]]
        converters = compiler.get_converters(columns)
        iterable = queryset._iterable_class
        if iterable is ModelIterable:
            if compiler.klass_info is None or compiler.query.select_related or queryset._prefetch_related_lookups:
                raise ValueError("only plain model querysets can be compiled (no related or prefetched objects)")
            shape = ("model", queryset.model, [column.target.attname for column in columns])
        elif iterable is ValuesListIterable:
            shape = ("tuples", None, None)
        elif iterable is FlatValuesListIterable:
            shape = ("flat", None, None)
        else:
            raise ValueError(f"cannot compile a queryset that yields {iterable.__name__}")
        return sql, order, compiler, converters, shape

    def __call__(self, *values, using: str | None = None) -> list:
        if len(values) != self.arity:
            raise TypeError(f"expected {self.arity} values, got {len(values)}")
        alias = using or (router.db_for_write if self.write else router.db_for_read)(self.model)
        compiled = self._by_alias.get(alias)
        if compiled is None:
            with _lock:
                compiled = self._by_alias.setdefault(alias, self._compile(alias))
        sql, order, compiler, converters, (kind, model, names) = compiled
        with connections[alias].cursor() as cursor:
            cursor.execute(sql, [values[index] for index in order])
            rows: Iterator = iter(cursor.fetchall())
        if converters:
            rows = compiler.apply_converters(rows, converters)
        if kind == "model":
            return [model.from_db(alias, names, row) for row in rows]
        if kind == "flat":
            return [row[0] for row in rows]
        return [tuple(row) for row in rows]


_updates: dict[tuple, str] = {}


def update_fields(obj: Model, names: Sequence[str]) -> None:
    """obj.save(update_fields=names), without compiling the UPDATE each time. Raises DatabaseError when
    no row was updated, as save() does."""
    model = type(obj)
    fields = [model._meta.get_field(name) for name in names]
    alias = router.db_for_write(model, instance=obj)
    values = [field.pre_save(obj, False) for field in fields]
    if (signals.pre_save.has_listeners(model) or signals.post_save.has_listeners(model)
            or any(hasattr(value, "resolve_expression") for value in values)):
        obj.save(update_fields=names, using=alias)
        return
    connection = connections[alias]
    key = (model, tuple(names), alias)
    sql = _updates.get(key)
    if sql is None:
        quote = connection.ops.quote_name
        sql = _updates[key] = (f"UPDATE {quote(model._meta.db_table)} SET "
                               + ", ".join(f"{quote(field.column)} = %s" for field in fields)
                               + f" WHERE {quote(model._meta.pk.column)} = %s")
    params = [field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)]
    params.append(model._meta.pk.get_db_prep_value(obj.pk, connection))
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        if cursor.rowcount == 0:
            raise DatabaseError("Save with update_fields did not affect any rows.")
    obj._state.db = alias
