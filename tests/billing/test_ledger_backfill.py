"""Audit rows written without a ledger line (before the ledger existed, or by a process of
the previous release during a rolling deploy) get theirs: from the migration, and from
`manage.py billing_backfill_ledger` after it. Budgets rebuilt from the ledger must see
that spend."""

from __future__ import annotations

import importlib
from decimal import Decimal
from io import StringIO

import pytest
from django.apps import apps
from django.core.management import call_command

from audit.store import prepare, write_rows
from billing.ledger import ledger_backfill
from billing.models import UsageLine
from tests.audit.rows import row

pytestmark = pytest.mark.django_db(transaction=True)

migration = importlib.import_module("billing.migrations.0006_ledger_lines_for_existing_audit_rows")


@pytest.fixture
def rows_without_lines() -> None:
    """Audit rows as the previous release left them: stored, with no ledger line."""
    write_rows(
        [
            prepare(row("req_ok", prompt_tokens=10, completion_tokens=5, cost_usd="0.0000225")),
            prepare(row("req_used", outcome="cancelled", completion_tokens=3, cost_usd="0.00001")),
            prepare(row("req_refused", outcome="rejected", status_code=429, cost_usd=Decimal(0))),
            prepare(row("req_failed", outcome="upstream_error", status_code=502, cost_usd=0)),
            prepare(row("req_tagged", metadata={"feature": "chat", "audit_sanitized": {"x": 1}})),
        ]
    )
    UsageLine.objects.all().delete()


def billed() -> dict[str, Decimal]:
    return dict(UsageLine.objects.values_list("request_id", "cost_usd"))


@pytest.mark.usefixtures("rows_without_lines")
def test_the_backfill_gives_each_billable_row_its_line_once():
    assert ledger_backfill(batch_size=2) == 3
    assert billed() == {
        "req_ok": Decimal("0.0000225"),
        "req_used": Decimal("0.00001"),
        "req_tagged": row("x").cost_usd,
    }
    assert UsageLine.objects.get(request_id="req_tagged").metadata == {"feature": "chat"}
    assert ledger_backfill() == 0  # again: nothing twice


@pytest.mark.usefixtures("rows_without_lines")
def test_the_command_says_how_many_lines_it_added():
    out = StringIO()
    call_command("billing_backfill_ledger", stdout=out)
    call_command("billing_backfill_ledger", stdout=out)
    assert out.getvalue().splitlines() == ["3 ledger line(s) added.", "0 ledger line(s) added."]


@pytest.mark.usefixtures("rows_without_lines")
def test_the_migration_writes_the_same_lines_as_the_backfill():
    migration.lines_for_existing_rows(apps, None)
    from_migration = {line.request_id: line for line in UsageLine.objects.all()}
    UsageLine.objects.all().delete()
    ledger_backfill()
    from_backfill = {line.request_id: line for line in UsageLine.objects.all()}
    fields = [f.attname for f in UsageLine._meta.concrete_fields if not f.primary_key]
    assert sorted(from_migration) == sorted(from_backfill) == ["req_ok", "req_tagged", "req_used"]
    for request_id, line in from_migration.items():
        other = from_backfill[request_id]
        assert {f: getattr(line, f) for f in fields} == {f: getattr(other, f) for f in fields}
