"""Migration audit 0005: its indexes exist, built concurrently on Postgres, and it goes back
and forth (the time index replaces created_at's own, which comes back when reversed)."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = ("audit", "0004_cached_and_reasoning_tokens")
NEW = {"audit_time", "audit_tenant_status_time", "audit_status_time"}


def indexes() -> dict[str, dict]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, "audit_auditevent")
    return {name: info for name, info in found.items() if info["index"] and not info["primary_key"]}


def created_at_field_indexes() -> set[str]:
    return {
        name
        for name, info in indexes().items()
        if info["columns"] == ["created_at"] and name not in NEW
    }


def migrate(target: tuple[str, str] | None) -> None:
    executor = MigrationExecutor(connection)
    executor.migrate([target] if target else executor.loader.graph.leaf_nodes())


def test_the_indexes_replace_created_ats_own_and_come_back_when_reversed():
    assert set(indexes()) >= NEW
    assert created_at_field_indexes() == set()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'audit_time'")
            definition = cursor.fetchone()[0]
        assert "INCLUDE (status_code, outcome, latency_ms, tenant_id)" in definition

    try:
        migrate(BEFORE)
        assert not NEW & set(indexes())
        assert len(created_at_field_indexes()) == 1
    finally:
        migrate(None)

    assert set(indexes()) >= NEW
    assert created_at_field_indexes() == set()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent builds are Postgres's")
def test_an_index_a_failed_concurrent_build_left_invalid_is_built_again():
    migrate(BEFORE)
    try:
        with connection.cursor() as cursor:
            cursor.execute("CREATE INDEX audit_status_time ON audit_auditevent (status_code)")
            # What a cancelled CREATE INDEX CONCURRENTLY leaves behind.
            cursor.execute(
                "UPDATE pg_index SET indisvalid = false "
                "WHERE indexrelid = 'audit_status_time'::regclass"
            )
    finally:
        migrate(None)

    assert indexes()["audit_status_time"]["columns"] == ["status_code", "created_at"]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'audit_status_time'::regclass"
        )
        assert cursor.fetchone()[0] is True
