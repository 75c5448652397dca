"""Closing billing months: in order, after the grace, with a rate; numbered without gaps;
the lines billed marked; closed statements and their roll-ups never changed again; late
usage billed once, on the next statement, as adjustment lines."""

from __future__ import annotations

import threading
from datetime import date, timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from billing.closing import PeriodCloseError, period_close
from billing.models import DailyUsage, Statement, StatementLine, UsageLine
from billing.rollups import rollup_pending
from billing.statements import statement_get
from billing.terms_services import exchange_rate_fix, tenant_terms_set
from tests import factories
from tests.billing.ledger_lines import line, local, priced_model, rolled_up

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _settle_at_once(settings) -> None:
    settings.BILLING_ROLLUP_SETTLE_SECONDS = 0


def numbers() -> list[str]:
    return list(Statement.objects.order_by("number").values_list("number", flat=True))


def test_a_month_is_refused_before_its_end_plus_the_grace(acme, settings):
    line(acme, timezone.now() - timedelta(minutes=1))
    this_month = f"{timezone.now():%Y-%m}"
    with pytest.raises(PeriodCloseError, match="cannot be closed before"):
        period_close(month=this_month, tenant_slug="acme")
    line(acme, local("2025-01-31 23:00"))
    settings.BILLING_CLOSE_GRACE_MINUTES = 60 * 24 * 365 * 10
    with pytest.raises(PeriodCloseError, match="BILLING_CLOSE_GRACE_MINUTES"):
        period_close(month="2025-01", tenant_slug="acme")
    assert not Statement.objects.exists()


def test_a_foreign_currency_needs_the_months_rate(acme):
    tenant_terms_set(tenant=acme, markup_percent=0, currency="EUR", time_zone="Europe/Paris")
    line(acme, local("2025-01-31 12:00"), priced_model(), prompt=1_000_000, completion=0)
    with pytest.raises(PeriodCloseError, match="no EUR exchange rate is fixed for 2025-01"):
        period_close(month="2025-01", tenant_slug="acme")
    assert not Statement.objects.exists() and not UsageLine.objects.filter(statement_id__gt=0)
    exchange_rate_fix(currency="EUR", month="2025-01", rate="0.9")
    [statement] = period_close(month="2025-01", tenant_slug="acme")
    assert (statement.total_usd, statement.total, statement.currency) == (1, Decimal("0.9"), "EUR")


def test_numbers_have_no_gaps_across_tenants_and_refusals(acme, globex, settings):
    gpt = priced_model()
    for tenant in (acme, globex):
        line(tenant, local("2025-01-10 10:00"), gpt)
        line(tenant, local("2025-02-10 10:00"), gpt)
    tenant_terms_set(tenant=globex, markup_percent=0, currency="GBP", time_zone="UTC")
    with pytest.raises(PeriodCloseError):
        period_close(month="2025-01")  # globex has no rate: nothing is closed
    exchange_rate_fix(currency="GBP", month="2025-01", rate="0.8")
    exchange_rate_fix(currency="GBP", month="2025-02", rate="0.8")
    made = period_close(month="2025-01") + period_close(month="2025-02", tenant_slug="globex")
    made += period_close(month="2025-02", tenant_slug="acme")
    year = timezone.now().year
    expected = [f"ST-{year}-{n:06d}" for n in range(1, 5)]
    assert [s.number for s in made] == numbers() == expected
    assert [(s.tenant_slug, s.month) for s in made] == [
        ("acme", "2025-01"),
        ("globex", "2025-01"),
        ("globex", "2025-02"),
        ("acme", "2025-02"),
    ]


def test_closing_a_month_closes_the_earlier_open_months_with_usage_first(acme):
    gpt = priced_model()
    november = line(acme, local("2024-11-30 10:00"), gpt)
    january = line(acme, local("2025-01-02 10:00"), gpt)
    made = period_close(month="2025-01", tenant_slug="acme")
    assert [s.month for s in made] == ["2024-11", "2025-01"]  # December had no usage
    november.refresh_from_db()
    january.refresh_from_db()
    assert (november.statement_id, january.statement_id) == (made[0].id, made[1].id)
    assert period_close(month="2024-12", tenant_slug="acme") == []  # closed, empty


def test_closing_again_makes_nothing_and_the_command_says_so(acme, globex):
    line(acme, local("2025-01-10 10:00"), priced_model(), prompt=1_000_000)
    out = StringIO()
    call_command("billing_close", "--month", "2025-01", stdout=out)
    [statement] = Statement.objects.all()
    assert f"{statement.number}  acme  2025-01  1.00 USD" in out.getvalue()
    out = StringIO()
    call_command("billing_close", "--month", "2025-01", "--tenant", "acme", stdout=out)
    assert "acme: 2025-01 is already closed." in out.getvalue()
    call_command("billing_close", "--month", "2025-01", "--tenant", "globex", stdout=out)
    assert "globex: nothing to bill up to 2025-01." in out.getvalue()
    assert Statement.objects.count() == 1
    with pytest.raises(CommandError, match="YYYY-MM"):
        call_command("billing_close", "--month", "2025-13")
    with pytest.raises(CommandError, match="No tenant 'nope'"):
        call_command("billing_close", "--month", "2025-01", "--tenant", "nope")


def test_a_closed_statement_never_changes_and_late_usage_is_adjusted_next_month(acme):
    gpt = priced_model()
    line(acme, local("2025-01-10 10:00"), gpt)
    rollup_pending()
    [january] = period_close(month="2025-01", tenant_slug="acme")
    issued = statement_get(tenant_slug="acme", month="2025-01")
    january_rows = rolled_up(day__lt=date(2025, 2, 1), late=False)
    late = line(acme, local("2025-01-31 23:59:59"), gpt, prompt=2_000_000, completion=0)
    line(acme, local("2025-02-03 10:00"), gpt)
    rollup_pending()
    assert statement_get(tenant_slug="acme", month="2025-01") == issued
    assert rolled_up(day__lt=date(2025, 2, 1), late=False) == january_rows
    [february] = period_close(month="2025-02", tenant_slug="acme")
    adjustments = StatementLine.objects.filter(statement=february).exclude(adjustment_of="")
    assert [(x.adjustment_of, x.token_kind, x.quantity) for x in adjustments] == [
        ("2025-01", "input", 2_000_000)
    ]
    assert february.adjustments_usd == Decimal("2") and february.subtotal_usd == Decimal("0.002")
    late.refresh_from_db()
    assert late.statement_id == february.id
    assert statement_get(tenant_slug="acme", month="2025-01") == issued
    # Billed once: March has nothing of it.
    assert statement_get(tenant_slug="acme", month="2025-03").lines == []
    assert january.total_usd == Decimal("0.002")


def test_a_closed_months_roll_ups_say_what_its_statement_bills(acme):
    """Even for lines the roll-ups had not seen yet when the month closed."""
    gpt = priced_model()
    tenant_terms_set(tenant=acme, markup_percent=0, currency="USD", time_zone="America/New_York")
    for day in (1, 15, 31):
        line(acme, local(f"2025-01-{day:02d} 23:59:59", "America/New_York"), gpt)
    line(acme, local("2025-02-01 00:00", "America/New_York"), gpt)
    [statement] = period_close(month="2025-01", tenant_slug="acme")
    requests, tokens, cost = rolled_up(day__lt=date(2025, 2, 1))
    billed = sum(x.quantity for x in StatementLine.objects.filter(statement=statement))
    assert (requests, tokens, cost) == (3, billed, statement.total_usd)
    assert sorted(DailyUsage.objects.values_list("day", flat=True)) == [
        date(2025, 1, 1),
        date(2025, 1, 15),
        date(2025, 1, 31),
        date(2025, 2, 1),  # the close rebuilt the next month's first day
    ]


def test_closing_for_every_tenant_closes_those_with_unbilled_usage(acme, globex):
    line(acme, local("2025-01-10 10:00"), priced_model())
    made = period_close(month="2025-01")
    assert [(s.tenant_slug, s.month) for s in made] == [("acme", "2025-01")]
    assert period_close(month="2025-01") == []


def test_the_statement_records_who_closed_it(acme, django_user_model):
    finance = django_user_model.objects.create_user("finance", password="x")
    line(acme, local("2025-01-10 10:00"))
    [statement] = period_close(month="2025-01", tenant_slug="acme", user=finance)
    assert statement.closed_by == finance


@pytest.mark.skipif(connection.vendor != "postgresql", reason="concurrent closes need Postgres")
@pytest.mark.django_db(transaction=True)
def test_concurrent_closes_take_numbers_in_turn(acme, globex):
    tenants = [acme, globex, factories.make_tenant("initech")]
    for tenant in tenants:
        line(tenant, local("2025-01-10 10:00"))
    errors: list[BaseException] = []

    def close(slug: str) -> None:
        try:
            period_close(month="2025-01", tenant_slug=slug)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=close, args=(t.slug,)) for t in tenants]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    year = timezone.now().year
    assert numbers() == [f"ST-{year}-{n:06d}" for n in range(1, 4)]
