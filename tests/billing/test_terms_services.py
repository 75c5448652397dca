"""billing/terms_services.py: commercial terms written through services, validated there;
exchange rates fixed once."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from billing.models import ExchangeRate, PriceOverride, TenantTerms
from billing.terms_services import (
    exchange_rate_fix,
    price_override_delete,
    price_override_set,
    tenant_terms_delete,
    tenant_terms_set,
)
from gateway_project.lib.upsert import Change
from tests import factories

pytestmark = pytest.mark.django_db

D = Decimal


def set_terms(tenant, **overrides):
    values = {"markup_percent": D("15.00"), "currency": "EUR", "time_zone": "Europe/Paris"}
    return tenant_terms_set(tenant=tenant, **(values | overrides))


def test_a_tenants_terms_are_set_then_changed_only_when_they_differ(acme, saved):
    first = set_terms(acme)
    same = set_terms(acme, markup_percent="15")
    discount = set_terms(acme, markup_percent=D("-10.00"))

    assert [first.change, same.change, discount.change] == ["created", "unchanged", "updated"]
    terms = TenantTerms.objects.get(tenant=acme)
    assert (terms.markup_percent, terms.currency, terms.time_zone) == (
        D("-10.00"),
        "EUR",
        "Europe/Paris",
    )
    assert saved == ["TenantTerms", "TenantTerms"]


def test_a_currency_code_is_taken_in_any_case_and_stored_in_capitals(acme):
    assert set_terms(acme, currency=" jpy ").instance.currency == "JPY"


@pytest.mark.parametrize("currency", ["EURO", "XXX", "", "U$D"])
def test_an_unknown_currency_is_refused(acme, currency):
    with pytest.raises(ValidationError) as refused:
        set_terms(acme, currency=currency)
    assert "currency" in refused.value.message_dict
    assert not TenantTerms.objects.exists()


@pytest.mark.parametrize("markup", [D("-100"), D("-100.00"), D("1000.01"), D("12.345")])
def test_a_markup_outside_its_bounds_or_past_the_cent_is_refused(acme, markup):
    with pytest.raises(ValidationError) as refused:
        set_terms(acme, markup_percent=markup)
    assert "markup_percent" in refused.value.message_dict


@pytest.mark.parametrize("markup", [D("-99.99"), D("0"), D("1000")])
def test_a_markup_at_its_bounds_is_accepted(acme, markup):
    assert set_terms(acme, markup_percent=markup).instance.markup_percent == markup


def test_a_float_markup_is_refused_before_it_loses_a_cent(acme):
    with pytest.raises(ValidationError, match="Decimal"):
        set_terms(acme, markup_percent=0.1)


@pytest.mark.parametrize("zone", ["Europe/Paris", "America/New_York", "Asia/Kolkata", "UTC"])
def test_an_iana_time_zone_is_accepted(acme, zone):
    assert set_terms(acme, time_zone=zone).instance.time_zone == zone


@pytest.mark.parametrize(
    "zone", ["europe/paris", "Mars/Olympus", "", "localtime", "../../etc/passwd", "+02:00"]
)
def test_anything_but_an_iana_time_zone_name_is_refused(acme, zone):
    with pytest.raises(ValidationError) as refused:
        set_terms(acme, time_zone=zone)
    assert "time_zone" in refused.value.message_dict


def test_deleting_terms_returns_the_tenant_to_the_defaults(acme, globex):
    terms = set_terms(acme).instance
    set_terms(globex)

    tenant_terms_delete(terms=terms)

    assert list(TenantTerms.objects.values_list("tenant__slug", flat=True)) == ["globex"]


def test_a_price_override_replaces_the_tenants_previous_one(acme, globex, saved):
    model = factories.make_model(factories.make_provider())
    saved.clear()
    first = price_override_set(tenant=acme, provider_model=model, input_per_million=D("0.50"))
    again = price_override_set(tenant=acme, provider_model=model, input_per_million="0.5")
    changed = price_override_set(
        tenant=acme, provider_model=model, output_per_million=D("1.25"), cached_input_per_million=0
    )
    price_override_set(tenant=globex, provider_model=model, input_per_million=D("9"))

    assert [first.change, again.change, changed.change] == ["created", "unchanged", "updated"]
    override = PriceOverride.objects.get(tenant=acme)
    assert (
        override.input_per_million,
        override.output_per_million,
        override.cached_input_per_million,
    ) == (None, D("1.25"), D("0"))
    assert PriceOverride.objects.count() == 2
    assert saved == ["PriceOverride"] * 3  # not the unchanged one


def test_a_price_override_needs_a_price_none_negative_and_six_places_at_most(acme):
    model = factories.make_model(factories.make_provider())
    for prices in (
        {},
        {"input_per_million": D("-0.01")},
        {"output_per_million": D("0.0000001")},
        {"cached_input_per_million": D("100000000")},
    ):
        with pytest.raises(ValidationError):
            price_override_set(tenant=acme, provider_model=model, **prices)
    assert not PriceOverride.objects.exists()


def test_a_price_override_is_deleted(acme):
    model = factories.make_model(factories.make_provider())
    override = price_override_set(tenant=acme, provider_model=model, input_per_million=1).instance

    price_override_delete(override=override)

    assert not PriceOverride.objects.exists()


def test_an_exchange_rate_is_fixed_once_and_fixing_it_again_changes_nothing():
    fixed = exchange_rate_fix(currency="eur", month="2026-11", rate=D("0.92345678"))
    again = exchange_rate_fix(currency="EUR", month="2026-11", rate="0.923456780")

    assert (fixed.change, again.change) == (Change.CREATED, Change.UNCHANGED)
    assert again.instance.pk == fixed.instance.pk
    assert ExchangeRate.objects.get().rate == D("0.92345678")


def test_a_fixed_exchange_rate_cannot_be_changed():
    exchange_rate_fix(currency="EUR", month="2026-11", rate=D("0.92"))

    with pytest.raises(ValidationError, match="fixed per closed period"):
        exchange_rate_fix(currency="EUR", month="2026-11", rate=D("0.93"))

    assert ExchangeRate.objects.get().rate == D("0.92")
    # Another month, or another currency, is another rate.
    exchange_rate_fix(currency="EUR", month="2026-12", rate=D("0.93"))
    exchange_rate_fix(currency="GBP", month="2026-11", rate=D("0.79"))
    assert ExchangeRate.objects.count() == 3


def test_a_fixed_rate_is_never_saved_again_whatever_the_path():
    fixed = exchange_rate_fix(currency="EUR", month="2026-11", rate=D("0.92")).instance
    fixed.rate = D("0.5")

    with pytest.raises(ValidationError, match="fixed per closed period"):
        fixed.save()

    assert ExchangeRate.objects.get().rate == D("0.92")


@pytest.mark.parametrize(
    ("currency", "month", "rate", "field"),
    [
        ("EUR", "2026-13", D("1"), "month"),
        ("EUR", "2026-1", D("1"), "month"),
        ("EUR", "26-01", D("1"), "month"),
        ("EUR", "2026-01", D("0"), "rate"),
        ("EUR", "2026-01", D("-0.5"), "rate"),
        ("EUR", "2026-01", D("0.000000001"), "rate"),
        ("EUR", "2026-01", D("12345678901"), "rate"),
        ("XYZ", "2026-01", D("1"), "currency"),
        ("USD", "2026-01", D("1"), "currency"),
    ],
)
def test_an_exchange_rate_is_validated(currency, month, rate, field):
    with pytest.raises(ValidationError) as refused:
        exchange_rate_fix(currency=currency, month=month, rate=rate)
    assert field in refused.value.message_dict
    assert not ExchangeRate.objects.exists()


def test_commercial_terms_do_not_invalidate_the_proxys_snapshot(acme, monkeypatch):
    from gateway_project.lib import generation

    bumps: list[object] = []
    monkeypatch.setattr(generation, "bump", lambda: bumps.append(1))
    model = factories.make_model(factories.make_provider())
    bumps.clear()

    set_terms(acme)
    price_override_set(tenant=acme, provider_model=model, input_per_million=D("1"))
    exchange_rate_fix(currency="EUR", month="2026-11", rate=D("0.9"))

    assert bumps == []
