"""Inserting a batch of audit rows: COPY on Postgres, bulk_create elsewhere.

`bulk_create` prepares every field of every row through the ORM's compiler, which the
benchmark profile showed costing more than the rest of the writer together (about
0.3 ms of CPU per row, in a thread that shares the GIL with the proxy). On Postgres the
batch goes through psycopg's COPY instead: one statement, values adapted by psycopg,
JSON encoded by orjson. Both paths insert the same columns with the same defaults, and
either inserts the whole batch or nothing (COPY is one statement; bulk_create runs in one
transaction), so the writer's retry and bad-row isolation work the same on both.
"""

from __future__ import annotations

from collections.abc import Callable

import orjson
from django.db import connection, models

from audit.models import AuditEvent

_COLUMNS: list[tuple[str, str, Callable[[object], object]]] | None = None


def _json_dumps(value: object) -> str:
    # Decimal and datetime may ride in metadata; JSONField would refuse them, the row must
    # not be lost for it.
    return orjson.dumps(value, default=str).decode()


def _columns() -> list[tuple[str, str, Callable[[object], object]]]:
    """(row key, column, how to adapt the value) for every column the writer fills."""
    global _COLUMNS
    if _COLUMNS is None:
        from psycopg.types.json import Jsonb

        def as_jsonb(value: object) -> object:
            return None if value is None else Jsonb(value, dumps=_json_dumps)

        def unchanged(value: object) -> object:
            return value

        _COLUMNS = [
            (
                field.attname,
                field.column,
                as_jsonb if isinstance(field, models.JSONField) else unchanged,
            )
            for field in AuditEvent._meta.concrete_fields
            if not field.primary_key
        ]
    return _COLUMNS


def _defaults() -> dict[str, object]:
    return {
        field.attname: field.get_default()
        for field in AuditEvent._meta.concrete_fields
        if not field.primary_key
    }


def insert_rows(rows: list[dict], *, between_rows: Callable[[], None] | None = None) -> None:
    """Insert `rows` (AuditEvent field values by attname) in one statement, calling
    `between_rows()` after each row is encoded (the writer thread yields the GIL there)."""
    if connection.vendor != "postgresql":
        AuditEvent.objects.bulk_create([AuditEvent(**fields) for fields in rows])
        return
    columns = _columns()
    defaults = _defaults()
    statement = "COPY {} ({}) FROM STDIN".format(
        connection.ops.quote_name(AuditEvent._meta.db_table),
        ", ".join(connection.ops.quote_name(column) for _, column, _ in columns),
    )
    # The raw psycopg cursor's errors are not translated by Django's cursor wrapper: this
    # makes them django.db errors, which the writer tells apart (outage vs bad row).
    with (
        connection.wrap_database_errors,
        connection.cursor() as cursor,
        cursor.cursor.copy(statement) as copy,
    ):
        for fields in rows:
            copy.write_row(
                [
                    adapt(fields[key] if key in fields else defaults[key])
                    for key, _, adapt in columns
                ]
            )
            if between_rows is not None:
                between_rows()
