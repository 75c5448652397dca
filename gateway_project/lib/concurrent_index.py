"""Adding an index to a big table without stopping its writes.

A plain CREATE INDEX holds a lock that blocks every INSERT into the table while it reads
all of it: on an audit log of millions of rows, minutes in which the gateway's audit
writer cannot write. On Postgres, `AddIndexConcurrently` builds the index with CREATE INDEX
CONCURRENTLY instead (writes go on; it takes longer), which cannot run in a transaction:
its migration sets `atomic = False`. Elsewhere (SQLite, the small embedded setup) it is a
plain AddIndex.

`DropFieldIndexConcurrently` drops a field's own index the same way, once a better one has
replaced it.

A concurrent build that fails (cancelled, a deadlock, a restart) leaves an INVALID index
of that name behind, which the next attempt would trip over: it is dropped first. An index
of that name already valid (built by hand ahead of the deploy, say) is kept as it is.
"""

from __future__ import annotations

from typing import Any

from django.db.migrations.operations import AddIndex
from django.db.migrations.operations.base import Operation
from django.db.models import Index


def _index_state(schema_editor: Any, name: str) -> bool | None:
    """True for a valid index of that name, False for an invalid one, None for none."""
    with schema_editor.connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index AS i JOIN pg_class AS c ON c.oid = i.indexrelid "
            "WHERE c.relname = %s AND pg_catalog.pg_table_is_visible(c.oid)",
            [name],
        )
        row = cursor.fetchone()
    return None if row is None else bool(row[0])


class AddIndexConcurrently(AddIndex):
    """AddIndex, built CONCURRENTLY on Postgres (the migration must be non-atomic)."""

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_forwards(app_label, schema_editor, from_state, to_state)
            return
        if schema_editor.connection.in_atomic_block:
            raise ValueError("AddIndexConcurrently needs a migration with atomic = False.")
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        state = _index_state(schema_editor, self.index.name)
        if state:
            return
        if state is False:
            schema_editor.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {schema_editor.quote_name(self.index.name)}"
            )
        schema_editor.add_index(model, self.index, concurrently=True)

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        if schema_editor.connection.vendor != "postgresql":
            super().database_backwards(app_label, schema_editor, from_state, to_state)
            return
        model = from_state.apps.get_model(app_label, self.model_name)
        if self.allow_migrate_model(schema_editor.connection.alias, model):
            schema_editor.remove_index(model, self.index, concurrently=True)

    def describe(self) -> str:
        return f"{super().describe()} (concurrently on Postgres)"


class DropFieldIndexConcurrently(Operation):
    """Drop the index `db_index=True` gave a field, DROP INDEX CONCURRENTLY on Postgres (a
    plain DROP INDEX would wait for, then block, every read and write of the table); pair it
    with the AlterField to db_index=False in SeparateDatabaseAndState's state operations.
    Elsewhere a plain DROP INDEX (AlterField would rebuild the whole table on SQLite)."""

    reduces_to_sql = False
    reversible = True

    def __init__(self, model_name: str, name: str) -> None:
        self.model_name = model_name
        self.name = name

    def state_forwards(self, app_label: str, state: Any) -> None:
        pass  # the AlterField beside it carries the state

    def _index_names(self, schema_editor: Any, model: Any) -> list[str]:
        # As AlterField finds it: a b-tree index on the column alone, not one in Meta.
        column = model._meta.get_field(self.name).column
        names: list[str] = schema_editor._constraint_names(
            model,
            [column],
            index=True,
            type_=Index.suffix,
            exclude={index.name for index in model._meta.indexes},
        )
        return names

    def database_forwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = from_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        concurrently = schema_editor.connection.vendor == "postgresql"
        if concurrently and schema_editor.connection.in_atomic_block:
            raise ValueError("DropFieldIndexConcurrently needs a migration with atomic = False.")
        for name in self._index_names(schema_editor, model):
            keyword = "CONCURRENTLY " if concurrently else ""
            schema_editor.execute(f"DROP INDEX {keyword}IF EXISTS {schema_editor.quote_name(name)}")

    def database_backwards(
        self, app_label: str, schema_editor: Any, from_state: Any, to_state: Any
    ) -> None:
        model = to_state.apps.get_model(app_label, self.model_name)
        if not self.allow_migrate_model(schema_editor.connection.alias, model):
            return
        field = model._meta.get_field(self.name)
        statement = schema_editor._create_index_sql(model, fields=[field])
        sql = str(statement)
        if schema_editor.connection.vendor == "postgresql":
            sql = sql.replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY", 1)
        schema_editor.execute(sql)

    def describe(self) -> str:
        return f"Drop the index of {self.model_name}.{self.name} (concurrently on Postgres)"
