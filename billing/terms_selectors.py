"""Reads of commercial terms, for statements and reports (never the proxy: none of this is
in its snapshot). A tenant without terms pays list prices, in USD, by UTC months."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from billing.models import ExchangeRate, PriceOverride, TenantTerms
from billing.pricing import LEDGER_CURRENCY


@dataclass(frozen=True)
class OverridePrices:
    """A tenant's own prices for one model; None: that kind is at the list price."""

    input_per_million: Decimal | None = None
    output_per_million: Decimal | None = None
    cached_input_per_million: Decimal | None = None


@dataclass(frozen=True)
class Terms:
    markup_percent: Decimal = Decimal(0)
    currency: str = LEDGER_CURRENCY
    time_zone: str = "UTC"
    overrides: Mapping[int, OverridePrices] = field(default_factory=dict)  # by model id

    def prices_for(self, provider_model_id: int) -> OverridePrices:
        return self.overrides.get(provider_model_id) or OverridePrices()


def tenant_terms_get(*, tenant_id: int) -> Terms:
    """A tenant's terms and price overrides, in two queries."""
    overrides = {
        row.provider_model_id: OverridePrices(
            row.input_per_million, row.output_per_million, row.cached_input_per_million
        )
        for row in PriceOverride.objects.filter(tenant_id=tenant_id)
    }
    terms = TenantTerms.objects.filter(tenant_id=tenant_id).first()
    if terms is None:
        return Terms(overrides=overrides)
    return Terms(terms.markup_percent, terms.currency, terms.time_zone, overrides)


def exchange_rate_get(*, currency: str, month: str) -> Decimal | None:
    """Units of `currency` per US dollar for statements of `month`: 1 for USD, the fixed
    rate otherwise, None while no rate is fixed."""
    if currency == LEDGER_CURRENCY:
        return Decimal(1)
    return (
        ExchangeRate.objects.filter(currency=currency, month=month)
        .values_list("rate", flat=True)
        .first()
    )
