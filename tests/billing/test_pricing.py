"""billing/pricing.py: statement arithmetic to the cent, in Decimal, at its edges."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation, getcontext

import pytest

from billing.pricing import (
    PricedLine,
    amount_for,
    markup_amount,
    price_line,
    to_statement_currency,
    unit_price,
)

D = Decimal


def test_an_override_replaces_the_list_price_and_none_keeps_it():
    assert unit_price(list_price=D("2.50"), override=D("1.75")) == D("1.75")
    assert unit_price(list_price=D("2.50"), override=None) == D("2.50")
    # A zero override is a real price (a free model for this tenant), not "no override".
    assert unit_price(list_price=D("2.50"), override=D("0")) == D("0")


def test_an_amount_is_tokens_times_the_price_per_million_to_ten_places():
    assert amount_for(tokens=1_000_000, price_per_million=D("2.50")) == D("2.5000000000")
    assert amount_for(tokens=1, price_per_million=D("0.15")) == D("0.0000001500")
    assert amount_for(tokens=0, price_per_million=D("30")) == D("0E-10")
    assert amount_for(tokens=1234, price_per_million=D("0.000001")) == D("1.2E-9")


def test_a_sub_ten_place_amount_rounds_half_to_even():
    # 5 tokens at 0.000001 per million is 5e-12: below the tenth place, so 0.
    assert amount_for(tokens=5, price_per_million=D("0.000001")) == 0
    # 15 tokens at 0.00001 is 1.5e-10 -> 2e-10; 25 tokens is 2.5e-10 -> 2e-10 (to even).
    assert amount_for(tokens=15, price_per_million=D("0.00001")) == D("2E-10")
    assert amount_for(tokens=25, price_per_million=D("0.00001")) == D("2E-10")
    assert amount_for(tokens=35, price_per_million=D("0.00001")) == D("4E-10")


def test_a_huge_amount_does_not_overflow_the_default_decimal_context():
    # Beyond any real month, but a report summing tokens must never raise: 30 digits.
    tokens, price = 10**18, D("99999999.999999")  # the largest max_digits=14 price
    with pytest.raises(InvalidOperation):  # what the default 28 digits would do
        (tokens * price / 10**6).quantize(D("1E-10"))
    amount = amount_for(tokens=tokens, price_per_million=price)
    assert amount == D("99999999999999000000.0000000000")
    assert amount.as_tuple().exponent == -10
    assert getcontext().prec == 28  # the helper's wider context did not leak


def test_a_markup_and_a_discount_on_a_subtotal():
    assert markup_amount(subtotal=D("100"), markup_percent=D("15.00")) == D("15.0000000000")
    assert markup_amount(subtotal=D("100"), markup_percent=D("-10.00")) == D("-10.0000000000")
    assert markup_amount(subtotal=D("0.0000000003"), markup_percent=D("50")) == D("2E-10")
    assert markup_amount(subtotal=D("7"), markup_percent=D("1000")) == D("70.0000000000")


@pytest.mark.parametrize("percent", [D("-100"), D("-100.01"), D("1000.01"), D("NaN")])
def test_a_markup_out_of_bounds_is_refused(percent):
    with pytest.raises(ValueError, match=r"percentage|finite"):
        markup_amount(subtotal=D("1"), markup_percent=percent)


def test_a_priced_line_uses_the_override_and_the_markup():
    line = price_line(
        tokens=3_333_333, list_price=D("3"), override=D("2.40"), markup_percent=D("-12.5")
    )
    assert line == PricedLine(
        unit_price=D("2.40"),
        amount=D("7.9999992000"),
        markup=D("-0.9999999000"),
        total=D("6.9999993000"),
    )


def test_floats_and_bad_token_counts_are_refused():
    with pytest.raises(TypeError, match="Decimal"):
        amount_for(tokens=10, price_per_million=0.1)
    for tokens in (-1, True, 1.0):
        with pytest.raises(ValueError, match="tokens"):
            amount_for(tokens=tokens, price_per_million=D("1"))
    with pytest.raises(ValueError, match="finite"):
        amount_for(tokens=1, price_per_million=D("Infinity"))


def test_usd_converts_at_one_to_the_cent_half_to_even():
    assert to_statement_currency(usd=D("12.345"), currency="USD", rate=None) == D("12.34")
    assert to_statement_currency(usd=D("12.355"), currency="USD", rate=None) == D("12.36")
    assert to_statement_currency(usd=D("12.3450000001"), currency="USD", rate=None) == D("12.35")
    assert to_statement_currency(usd=D("-0.005"), currency="USD", rate=D("1")) == D("0.00")
    with pytest.raises(ValueError, match="at 1"):
        to_statement_currency(usd=D("1"), currency="USD", rate=D("0.9"))


def test_a_rate_converts_to_the_currencys_minor_unit():
    assert to_statement_currency(usd=D("100"), currency="EUR", rate=D("0.92345678")) == D("92.35")
    # 0.125 EUR exactly: half to even rounds down to 0.12, then 0.135 rounds up to 0.14.
    assert to_statement_currency(usd=D("0.25"), currency="EUR", rate=D("0.5")) == D("0.12")
    assert to_statement_currency(usd=D("0.27"), currency="EUR", rate=D("0.5")) == D("0.14")
    assert to_statement_currency(usd=D("10.05"), currency="JPY", rate=D("150")) == D("1508")
    assert to_statement_currency(usd=D("1"), currency="JPY", rate=D("0.5")) == D("0")
    assert to_statement_currency(usd=D("1"), currency="JPY", rate=D("1.5")) == D("2")
    assert to_statement_currency(usd=D("10"), currency="KWD", rate=D("0.30745")) == D("3.074")


def test_a_conversion_without_a_usable_rate_or_currency_is_refused():
    with pytest.raises(ValueError, match="No exchange rate"):
        to_statement_currency(usd=D("1"), currency="EUR", rate=None)
    for rate in (D("0"), D("-1")):
        with pytest.raises(ValueError, match="above 0"):
            to_statement_currency(usd=D("1"), currency="EUR", rate=rate)
    with pytest.raises(ValueError, match="not a statement currency"):
        to_statement_currency(usd=D("1"), currency="XXX", rate=D("1"))
