"""budget_status: a budget's spend in its current period, summed from the audit ledger."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from itertools import count
from zoneinfo import ZoneInfo

import pytest
from django.test import override_settings

from billing.models import Budget, UsageLine
from billing.selectors import budget_status
from tenants.models import Tenant
from tests import factories

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 15, 12, 0, tzinfo=UTC)
_ids = count()


def ledger_row(
    when: datetime,
    *,
    tokens: int = 0,
    cost: str = "0",
    tenant: Tenant | None = None,
    api_key_id: int | None = None,
    route_id: int | None = None,
) -> UsageLine:
    return UsageLine.objects.create(
        request_id=f"req-{next(_ids)}",
        created_at=when,
        tenant_id=tenant.id if tenant else None,
        api_key_id=api_key_id,
        route_id=route_id,
        outcome="success",
        total_tokens=tokens,
        cost_usd=Decimal(cost),
    )


def test_a_monthly_budget_counts_only_this_months_rows_of_its_tenant(acme, globex):
    budget = Budget.objects.create(
        scope="tenant", tenant=acme, period="monthly", max_tokens=1000, max_cost_usd=Decimal("2")
    )
    ledger_row(datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC), tokens=500, cost="1", tenant=acme)
    ledger_row(datetime(2026, 3, 1, 0, 0, tzinfo=UTC), tokens=100, cost="0.25", tenant=acme)
    ledger_row(datetime(2026, 3, 15, 11, 0, tzinfo=UTC), tokens=200, cost="0.75", tenant=acme)
    ledger_row(datetime(2026, 3, 15, 11, 0, tzinfo=UTC), tokens=999, cost="9", tenant=globex)
    ledger_row(datetime(2026, 4, 1, 0, 0, tzinfo=UTC), tokens=999, cost="9", tenant=acme)

    status = budget_status(budget=budget, now=NOW)

    assert status.period_key == "m202603"
    assert status.period_start == datetime(2026, 3, 1, tzinfo=UTC)
    assert status.period_end == datetime(2026, 4, 1, tzinfo=UTC)
    assert status.spent_tokens == 300
    assert status.spent_cost == Decimal("1.00")
    assert status.remaining_tokens == 700
    assert status.remaining_cost == Decimal("1.00")
    # Tokens are 30% used, cost 50%: the budget is as used as its tightest limit.
    assert status.percent_used == Decimal("50.0")


def test_the_next_period_starts_from_zero(acme):
    budget = Budget.objects.create(scope="tenant", tenant=acme, period="daily", max_tokens=100)
    ledger_row(datetime(2026, 3, 15, 23, 59, tzinfo=UTC), tokens=80, tenant=acme)

    today = budget_status(budget=budget, now=datetime(2026, 3, 15, 23, 59, 30, tzinfo=UTC))
    tomorrow = budget_status(budget=budget, now=datetime(2026, 3, 16, 0, 0, 1, tzinfo=UTC))

    assert (today.spent_tokens, today.remaining_tokens) == (80, 20)
    assert (tomorrow.spent_tokens, tomorrow.remaining_tokens) == (0, 100)
    assert tomorrow.period_start == datetime(2026, 3, 16, tzinfo=UTC)


@override_settings(GATEWAY_BUDGET_TIMEZONE="Europe/Berlin")
def test_periods_follow_the_budget_time_zone(acme):
    budget = Budget.objects.create(scope="tenant", tenant=acme, period="daily", max_tokens=100)
    # 23:30 on the 14th and 00:30 on the 15th in Berlin.
    ledger_row(datetime(2026, 3, 14, 22, 30, tzinfo=UTC), tokens=7, tenant=acme)
    ledger_row(datetime(2026, 3, 14, 23, 30, tzinfo=UTC), tokens=5, tenant=acme)

    status = budget_status(budget=budget, now=NOW)

    berlin = ZoneInfo("Europe/Berlin")
    assert status.period_start == datetime(2026, 3, 15, tzinfo=berlin)
    assert status.period_end == datetime(2026, 3, 16, tzinfo=berlin)
    assert status.spent_tokens == 5


def test_a_weekly_budget_runs_monday_to_monday(acme):
    budget = Budget.objects.create(scope="tenant", tenant=acme, period="weekly", max_tokens=100)
    ledger_row(datetime(2026, 3, 8, 23, 0, tzinfo=UTC), tokens=40, tenant=acme)  # Sunday before
    ledger_row(datetime(2026, 3, 9, 1, 0, tzinfo=UTC), tokens=10, tenant=acme)  # Monday

    status = budget_status(budget=budget, now=NOW)  # Sunday the 15th

    assert status.period_start == datetime(2026, 3, 9, tzinfo=UTC)
    assert status.period_end == datetime(2026, 3, 16, tzinfo=UTC)
    assert status.spent_tokens == 10


def test_a_total_budget_has_no_end_and_counts_everything(acme):
    budget = Budget.objects.create(scope="tenant", tenant=acme, period="total", max_tokens=100)
    ledger_row(datetime(2020, 1, 1, tzinfo=UTC), tokens=60, tenant=acme)
    ledger_row(NOW, tokens=60, tenant=acme)

    status = budget_status(budget=budget, now=NOW)

    assert status.period_end is None
    assert status.spent_tokens == 120
    assert status.remaining_tokens == 0  # never negative
    assert status.percent_used == Decimal("120.0")  # but the overrun shows


def test_key_and_route_budgets_sum_their_own_rows(acme):
    api_key = factories.make_key(acme).api_key
    other_key = factories.make_key(acme, name="other").api_key
    route = factories.make_route("chat", factories.make_model(factories.make_provider()))
    key_budget = Budget.objects.create(scope="key", api_key=api_key, max_cost_usd=Decimal("3"))
    route_budget = Budget.objects.create(scope="route", route=route, max_tokens=1000)
    ledger_row(NOW, tokens=10, cost="1", tenant=acme, api_key_id=api_key.pk, route_id=route.pk)
    ledger_row(NOW, tokens=20, cost="2", tenant=acme, api_key_id=other_key.pk, route_id=route.pk)

    by_key = budget_status(budget=key_budget, now=NOW)
    by_route = budget_status(budget=route_budget, now=NOW)

    assert (by_key.spent_tokens, by_key.spent_cost) == (10, Decimal("1"))
    assert by_key.remaining_tokens is None  # a cost-only budget
    assert by_key.remaining_cost == Decimal("2")
    assert by_key.percent_used == Decimal("33.3")  # rounded down, never up to a false 100
    assert (by_route.spent_tokens, by_route.remaining_tokens) == (30, 970)
    assert by_route.remaining_cost is None


def test_a_budget_with_no_spend_reads_zero(acme):
    budget = Budget.objects.create(scope="tenant", tenant=acme, max_tokens=50)

    status = budget_status(budget=budget, now=NOW)

    assert (status.spent_tokens, status.spent_cost, status.percent_used) == (
        0,
        Decimal(0),
        Decimal("0.0"),
    )
