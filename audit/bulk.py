"""Inserting a batch of audit rows: COPY on Postgres, bulk_create elsewhere.

The only insert of AuditEvent rows: every row, whether the writer thread's or a spool or
dead-letter replay's, comes here through audit.store.write_rows, so sanitizing, bad-row
isolation and the exactly-once lookup by request_id cover all of them.

The writer thread shares the GIL with the event loop, so every microsecond of Python it
spends per row can hold up a request. `bulk_create` prepares every field of every row
through the ORM's compiler. On Postgres the batch goes through psycopg's COPY instead: one
statement, each row's values picked in one C call (`operator.itemgetter`), formatted by
psycopg's C code, and only the JSON columns encoded in Python (by orjson, once, while
sanitizing). bench/README.md has the figures, and the alternatives measured. Both paths
insert the same columns with the same defaults, and either inserts the whole batch or
nothing (COPY is one statement; bulk_create runs in one transaction), so the writer's
retry and bad-row isolation work the same on both.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable
from typing import Any

import orjson
from django.db import connection, models

from audit.json_columns import EncodedJson
from audit.models import AuditEvent


class _Layout:
    """The COPY statement, and how to turn a row dict into its values (built once)."""

    def __init__(self) -> None:
        fields = [field for field in AuditEvent._meta.concrete_fields if not field.primary_key]
        quote = connection.ops.quote_name
        self.statement = "COPY {} ({}) FROM STDIN".format(
            quote(AuditEvent._meta.db_table),
            ", ".join(quote(field.column) for field in fields),  # type: ignore[arg-type]  # concrete: a column
        )
        self.defaults = {field.attname: field.get_default() for field in fields}
        self.values = operator.itemgetter(*(field.attname for field in fields))
        self.json_positions = [
            index for index, field in enumerate(fields) if isinstance(field, models.JSONField)
        ]
        self.json_names = [fields[index].attname for index in self.json_positions]


@functools.cache
def _layout() -> _Layout:
    return _Layout()


def _json_bytes(value: object) -> bytes:
    # The writer hands JSON columns over already encoded (audit.sanitize encodes them
    # while checking them), so the common case encodes nothing here. Decimal and datetime
    # may ride in metadata; JSONField would refuse them, the row must not be lost for it.
    if isinstance(value, EncodedJson):
        return value.data
    return orjson.dumps(value, default=str)


def insert_rows(rows: list[dict], *, between_rows: Callable[[], None] | None = None) -> None:
    """Insert `rows` (AuditEvent field values by attname) in one statement, calling
    `between_rows()` after each row is encoded (the writer thread yields the GIL there)."""
    layout = _layout()
    if connection.vendor != "postgresql":
        # JSON columns as Postgres gets them (Decimal and the like as text), which Django's
        # JSONField would refuse.
        plain = [
            {
                **fields,
                **{
                    name: orjson.loads(_json_bytes(fields[name]))
                    for name in layout.json_names
                    if name in fields
                },
            }
            for fields in rows
        ]
        AuditEvent.objects.bulk_create([AuditEvent(**fields) for fields in plain])
        return
    from psycopg.types.json import Jsonb

    positions = layout.json_positions
    # The raw psycopg cursor's errors are not translated by Django's cursor wrapper: this
    # makes them django.db errors, which the writer tells apart (outage vs bad row).
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.cursor.copy(layout.statement) as copy,
    ):
        for fields in rows:
            values: list[Any] = list(layout.values({**layout.defaults, **fields}))
            for index in positions:
                value = values[index]
                if value is not None:
                    values[index] = Jsonb(value, dumps=_json_bytes)
            copy.write_row(values)
            if between_rows is not None:
                between_rows()
