"""The ledger read for a statement: token sums per (month billed as an adjustment,
provider, model, price version), and the versions' list prices. A draft (billing.statements)
and a close (billing.closing) read through here and price through the same pure function,
so an issued statement is its last draft."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import BigIntegerField, F, Min, QuerySet, Sum
from django.db.models.functions import Least

from billing.models import PriceVersion, UsageLine
from billing.period_state import next_month
from billing.periods import billing_month_bounds, billing_month_of


@dataclass(frozen=True)
class LedgerSum:
    adjustment_of: str  # "" for the statement's own month, else the closed month
    provider: str
    model: str
    price_version_id: int  # 0: the lines had none
    input_tokens: int  # prompt tokens that were not cached
    cached_input_tokens: int
    output_tokens: int  # completion tokens, reasoning included


@dataclass(frozen=True)
class VersionPrices:
    provider_model_id: int
    input_per_million: Decimal
    output_per_million: Decimal
    cached_input_per_million: Decimal | None


def _cached() -> Least:
    # A line's cached tokens are part of its prompt tokens; more is a bad report, and the
    # proxy priced at most the prompt as cached (providers.base.Price.cost): so here.
    return Least(F("cached_tokens"), F("prompt_tokens"))


def _grouped(lines: QuerySet[UsageLine], adjustment_of: str) -> list[LedgerSum]:
    rows = (
        lines.order_by()
        .values("provider", "model", "price_version_id")
        .annotate(
            input_tokens=Sum(
                F("prompt_tokens") - _cached(), output_field=BigIntegerField(), default=0
            ),
            cached_input_tokens=Sum(_cached(), output_field=BigIntegerField(), default=0),
            output_tokens=Sum("completion_tokens", output_field=BigIntegerField(), default=0),
        )
    )
    return [
        LedgerSum(
            adjustment_of,
            row["provider"],
            row["model"],
            row["price_version_id"] or 0,
            int(row["input_tokens"]),
            int(row["cached_input_tokens"]),
            int(row["output_tokens"]),
        )
        for row in rows
    ]


def ledger_sums(
    lines: QuerySet[UsageLine], *, period_start: datetime, period_end: datetime, time_zone: str
) -> list[LedgerSum]:
    """The sums of `lines`: those created in [period_start, period_end) as the month's own,
    those created before as adjustments of their own (closed) month in `time_zone`."""
    sums = _grouped(lines.filter(created_at__gte=period_start, created_at__lt=period_end), "")
    earlier = lines.filter(created_at__lt=period_start)
    oldest = earlier.aggregate(oldest=Min("created_at"))["oldest"]
    if oldest is None:
        return sums
    month = billing_month_of(moment=oldest, time_zone=time_zone)
    own = billing_month_of(moment=period_start, time_zone=time_zone)
    while month < own:
        start, end = billing_month_bounds(month=month, time_zone=time_zone)
        sums += _grouped(earlier.filter(created_at__gte=start, created_at__lt=end), month)
        month = next_month(month)
    return sums


def version_prices_get(version_ids: Iterable[int]) -> dict[int, VersionPrices]:
    rows = PriceVersion.objects.filter(id__in=[pk for pk in set(version_ids) if pk])
    return {
        row.id: VersionPrices(
            row.provider_model_id,
            row.input_per_million,
            row.output_per_million,
            row.cached_input_per_million,
        )
        for row in rows
    }
