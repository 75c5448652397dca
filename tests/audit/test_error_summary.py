"""Database errors in the audit writer's log lines: never the row they refused."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from audit.store import error_summary

pytestmark = pytest.mark.django_db

EMAIL = "jane.doe.4471@example.org"


def test_a_refused_value_is_not_quoted_in_the_summary():
    cast = "CAST(%s AS jsonb)" if connection.vendor == "postgresql" else "json(%s)"
    with (
        pytest.raises(DatabaseError) as caught,
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(f"SELECT {cast}", [f'{{"prompt": "{EMAIL}'])
    if connection.vendor == "postgresql":
        assert EMAIL in str(caught.value)  # psycopg's own text quotes it (DETAIL, CONTEXT)
        assert error_summary(caught.value).startswith("22P02: invalid input syntax")
    summary = error_summary(caught.value)
    assert summary and EMAIL not in summary and "jane" not in summary
