"""billing/terms_selectors.py: a tenant's terms as statements read them, defaults included."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.terms_selectors import OverridePrices, Terms, exchange_rate_get, tenant_terms_get
from billing.terms_services import exchange_rate_fix, price_override_set, tenant_terms_set
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_tenant_without_terms_pays_list_prices_in_usd_by_utc_months(
    acme, django_assert_num_queries
):
    with django_assert_num_queries(2):
        terms = tenant_terms_get(tenant_id=acme.pk)

    assert terms == Terms(Decimal(0), "USD", "UTC", {})
    assert terms.prices_for(123) == OverridePrices()


def test_a_tenants_terms_and_only_its_own_overrides_are_read(acme, globex):
    provider = factories.make_provider()
    big, small = factories.make_model(provider, "big"), factories.make_model(provider, "small")
    tenant_terms_set(tenant=acme, markup_percent="-7.5", currency="CHF", time_zone="Europe/Zurich")
    price_override_set(tenant=acme, provider_model=big, output_per_million=Decimal("4"))
    price_override_set(tenant=globex, provider_model=small, input_per_million=Decimal("9"))

    terms = tenant_terms_get(tenant_id=acme.pk)

    assert (terms.markup_percent, terms.currency, terms.time_zone) == (
        Decimal("-7.50"),
        "CHF",
        "Europe/Zurich",
    )
    assert terms.prices_for(big.pk) == OverridePrices(output_per_million=Decimal("4"))
    assert terms.prices_for(small.pk) == OverridePrices()


def test_a_rate_is_one_for_usd_the_fixed_one_otherwise_and_none_until_fixed(db):
    exchange_rate_fix(currency="EUR", month="2026-11", rate=Decimal("0.91"))

    assert exchange_rate_get(currency="USD", month="2026-11") == Decimal(1)
    assert exchange_rate_get(currency="EUR", month="2026-11") == Decimal("0.91")
    assert exchange_rate_get(currency="EUR", month="2026-12") is None
