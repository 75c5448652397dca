"""The usage ledger: one line per billable request, written with its audit row, never
twice, and kept when audit retention deletes the audit rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit import spool
from audit.models import AuditEvent
from audit.services import audit_purge_older_than, audit_spool_replay
from audit.store import prepare, write_rows
from audit.writer import AuditWriter
from billing.ledger import ledger_write
from billing.models import UsageLine
from tests.audit.rows import row
from tests.audit.test_dead_letters import fix_the_database, refusing_database  # noqa: F401

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _own_state_dir(settings, tmp_path) -> None:
    settings.STATE_DIR = tmp_path


def lines() -> dict[str, UsageLine]:
    return {line.request_id: line for line in UsageLine.objects.all()}


def test_billable_rows_get_one_line_each_and_refused_or_free_ones_none():
    batch = [
        prepare(row("req_ok", prompt_tokens=10, completion_tokens=5, total_tokens=15)),
        prepare(row("req_cancelled_used", outcome="cancelled", completion_tokens=3)),
        prepare(row("req_cancelled_early", outcome="cancelled", cost_usd=Decimal(0))),
        prepare(row("req_refused", outcome="rejected", status_code=429, cost_usd=Decimal(0))),
        prepare(row("req_failed", outcome="upstream_error", status_code=502, cost_usd=0)),
        # A stream broken after it started: the usage so far was charged to the budgets.
        prepare(row("req_broken_stream", outcome="upstream_error", completion_tokens=4)),
    ]
    assert write_rows(batch).written == 6
    assert sorted(lines()) == ["req_broken_stream", "req_cancelled_used", "req_ok"]


def test_a_line_holds_what_the_audit_row_says():
    audit = row(
        "req_full",
        tenant_id=None,
        tenant_slug="acme",
        route_id=7,
        provider="local",
        model="echo",
        stream=True,
        prompt_tokens=100,
        completion_tokens=40,
        total_tokens=140,
        cached_tokens=60,
        reasoning_tokens=12,
        price_version_id=3,
        metadata={"tags": {"team": "search"}},
    )
    write_rows([prepare(audit)])
    line = UsageLine.objects.get()
    stored = AuditEvent.objects.get()
    assert line.cost_usd == stored.cost_usd == audit.cost_usd
    assert (line.prompt_tokens, line.completion_tokens, line.total_tokens) == (100, 40, 140)
    assert (line.cached_tokens, line.reasoning_tokens) == (60, 12)
    assert (line.price_version_id, line.route_id, line.tenant_slug) == (3, 7, "acme")
    assert line.metadata == {"tags": {"team": "search"}} and line.stream


def test_the_same_batch_twice_counts_once():
    batch = [prepare(row(f"req_{n}")) for n in range(3)]
    write_rows(batch)
    # A retry whose first commit got through: looked up, skipped.
    settled = write_rows([dict(r) for r in batch], check_existing=True)
    assert settled.present == 3
    # And the ledger's own guard, should it ever be handed a row again.
    ledger_write([dict(r) for r in batch])
    assert UsageLine.objects.count() == 3
    assert AuditEvent.objects.count() == 3


def test_a_spool_file_replayed_twice_counts_each_request_once():
    path = spool.spill([prepare(row("req_a")), prepare(row("req_b"))])
    copy = path.read_bytes()
    assert audit_spool_replay().replayed == 2
    path.write_bytes(copy)  # as if a killed process had left it behind
    report = audit_spool_replay()
    assert (report.replayed, report.already_present) == (0, 2)
    assert sorted(lines()) == ["req_a", "req_b"]


def test_a_dead_lettered_row_has_no_line_until_it_is_replayed(refusing_database):  # noqa: F811
    writer = AuditWriter()
    writer.record(row("req_before"))
    writer.record(row("refuse_me"))
    writer.flush()
    assert sorted(lines()) == ["req_before"]
    assert spool.dead_letter_count() == 1
    fix_the_database()
    call_command("audit_replay_dead_letters", stdout=StringIO())
    call_command("audit_replay_dead_letters", stdout=StringIO())
    assert sorted(lines()) == ["refuse_me", "req_before"]


def test_audit_retention_leaves_the_ledger_alone():
    old = timezone.now() - timedelta(days=400)
    write_rows([prepare(row("req_old", created_at=old)), prepare(row("req_new"))])
    assert audit_purge_older_than(days=30) == 1
    assert list(AuditEvent.objects.values_list("request_id", flat=True)) == ["req_new"]
    assert sorted(lines()) == ["req_new", "req_old"]
    assert lines()["req_old"].cost_usd == Decimal("0.0000012345")


def test_a_deleted_key_leaves_its_lines():
    from tests import factories

    tenant = factories.make_tenant()
    key = factories.make_key(tenant).api_key
    write_rows([prepare(row("req_k", tenant_id=tenant.id, api_key_id=key.id))])
    key_id = key.id
    key.delete()
    assert lines()["req_k"].api_key_id == key_id


def test_a_budget_rebuilt_after_an_audit_purge_is_unchanged():
    from billing.selectors import budget_spend_in_period
    from tests import factories

    tenant = factories.make_tenant()
    start = timezone.now() - timedelta(days=60)
    write_rows(
        [
            prepare(row(f"req_{n}", tenant_id=tenant.id, total_tokens=10, created_at=when))
            for n, when in enumerate([start + timedelta(days=1), timezone.now()])
        ]
    )
    before = budget_spend_in_period(scope="tenant", subject_id=tenant.id, start=start, end=None)
    assert audit_purge_older_than(days=30) == 1
    after = budget_spend_in_period(scope="tenant", subject_id=tenant.id, start=start, end=None)
    assert before == after == (20, Decimal("0.0000024690"))


def test_a_line_keeps_the_callers_tags_not_the_writers_notes():
    write_rows([prepare(row("req_nul", response="a\x00b", metadata={"tags": {"k": "v"}}))])
    assert "audit_sanitized" in AuditEvent.objects.get().metadata
    assert lines()["req_nul"].metadata == {"tags": {"k": "v"}}
