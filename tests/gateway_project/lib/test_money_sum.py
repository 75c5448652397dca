"""money_sum: exact sums of 10-place money columns, on SQLite (REAL storage) as on Postgres."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models import Sum
from django.utils import timezone

from billing.models import UsageLine
from gateway_project.lib.money_sum import money_sum, money_value

pytestmark = pytest.mark.django_db

# 0.1 + 0.2 is not 0.3 in binary floating point; 10-place amounts make it worse.
AMOUNTS = [Decimal("0.1000000001"), Decimal("0.2000000002"), Decimal("0.0102578400")] * 700


def _lines() -> None:
    now = timezone.now()
    UsageLine.objects.bulk_create(
        UsageLine(request_id=f"req_{i}", created_at=now, outcome="success", cost_usd=amount)
        for i, amount in enumerate(AMOUNTS)
    )


def test_money_sum_is_the_exact_decimal_sum() -> None:
    _lines()
    total = UsageLine.objects.aggregate(cost=money_sum("cost_usd"))["cost"]
    assert money_value(total) == sum(AMOUNTS, Decimal(0)) == Decimal("217.1804882100")


def test_grouped_sums_are_exact_too() -> None:
    _lines()
    grouped = UsageLine.objects.values("outcome").annotate(cost=money_sum("cost_usd"))
    assert [money_value(row["cost"]) for row in grouped] == [Decimal("217.1804882100")]


def test_an_empty_set_sums_to_zero() -> None:
    assert money_value(UsageLine.objects.aggregate(cost=money_sum("cost_usd"))["cost"]) == 0


def test_plain_sum_is_what_this_is_for() -> None:
    # On SQLite the plain SUM is a float's decimal: the reason money_sum exists. On
    # Postgres both agree.
    _lines()
    plain = Decimal(UsageLine.objects.aggregate(cost=Sum("cost_usd"))["cost"])
    exact = money_value(UsageLine.objects.aggregate(cost=money_sum("cost_usd"))["cost"])
    from django.db import connection

    assert (plain == exact) is (connection.vendor == "postgresql")
