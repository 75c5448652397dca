"""Statements as data: the pricing of the ledger's sums to the cent (overrides, cached
prices, markup or discount, exchange rates), drafts of open months, issued statements."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.closing import period_close
from billing.ledger_sums import LedgerSum, VersionPrices
from billing.statements import StatementError, statement_figures, statement_get
from billing.terms_selectors import OverridePrices, Terms
from billing.terms_services import exchange_rate_fix, price_override_set, tenant_terms_set
from tests.billing.ledger_lines import line, local, priced_model

GPT = VersionPrices(
    provider_model_id=7,
    input_per_million=Decimal("2.50"),
    output_per_million=Decimal("10.00"),
    cached_input_per_million=Decimal("1.25"),
)
USAGE = LedgerSum("", "openai", "gpt-x", 1, 1_234_567, 100_000, 765_432)
LATE = LedgerSum("2025-01", "openai", "gpt-x", 1, 1000, 0, 0)


def figures(*sums: LedgerSum, rate: Decimal | None = Decimal(1), **terms: object):
    return statement_figures(list(sums), prices={1: GPT}, terms=Terms(**terms), rate=rate)


def test_lines_per_token_kind_markup_on_subtotal_and_adjustments_and_a_rate_to_the_cent():
    result = figures(LATE, USAGE, markup_percent=Decimal(15), currency="EUR", rate=Decimal("0.92"))
    assert [(x.adjustment_of, x.token_kind, x.quantity, x.amount_usd) for x in result.lines] == [
        ("", "input", 1_234_567, Decimal("3.0864175000")),
        ("", "cached_input", 100_000, Decimal("0.1250000000")),
        ("", "output", 765_432, Decimal("7.6543200000")),
        ("2025-01", "input", 1000, Decimal("0.0025000000")),
    ]
    assert result.subtotal_usd == Decimal("10.8657375")
    assert result.adjustments_usd == Decimal("0.0025")
    assert result.markup_usd == Decimal("1.6302356250")  # 15% of 10.8682375
    assert result.total_usd == Decimal("12.4984731250")
    assert result.total == Decimal("11.50")  # 11.4985952750 EUR


def test_a_discount_and_a_currency_without_minor_units():
    result = figures(USAGE, markup_percent=Decimal(-10), currency="JPY", rate=Decimal("150.5"))
    assert result.markup_usd == Decimal("-1.0865737500")
    assert result.total_usd == Decimal("9.7791637500")
    assert result.total == Decimal("1472")  # 1471.764144375


def test_overrides_replace_list_prices_kind_by_kind():
    cheaper = OverridePrices(input_per_million=Decimal("2.00"))
    result = figures(USAGE, overrides={7: cheaper})
    prices = {x.token_kind: x.unit_price for x in result.lines}
    assert prices == {
        "input": Decimal("2.00"),
        "cached_input": Decimal("1.25"),  # the version's cached price, not overridden
        "output": Decimal("10.00"),
    }
    assert result.total == Decimal("10.25")  # 2.469134 + 0.125 + 7.65432


def test_cached_tokens_are_at_the_input_price_the_tenant_pays_without_a_cached_price():
    no_cached = VersionPrices(7, Decimal("2.50"), Decimal("10.00"), None)
    sums = [LedgerSum("", "openai", "gpt-x", 1, 0, 1_000_000, 0)]
    listed = statement_figures(sums, prices={1: no_cached}, terms=Terms(), rate=Decimal(1))
    assert listed.lines[0].unit_price == Decimal("2.50")
    overridden = Terms(overrides={7: OverridePrices(input_per_million=Decimal("2.00"))})
    priced = statement_figures(sums, prices={1: no_cached}, terms=overridden, rate=None)
    assert (priced.lines[0].unit_price, priced.total) == (Decimal("2.00"), None)


def test_an_unknown_tenant_or_a_bad_month_is_a_clear_error(acme):
    with pytest.raises(StatementError, match="No tenant 'nope'"):
        statement_get(tenant_slug="nope", month="2025-01")
    with pytest.raises(ValueError, match="YYYY-MM"):
        statement_get(tenant_slug="acme", month="2025-1")


def test_a_draft_is_the_statement_the_close_then_issues(acme):
    gpt = priced_model(input_per_million="3.00", output_per_million="15.00")
    tenant_terms_set(tenant=acme, markup_percent="12.5", currency="EUR", time_zone="Europe/Paris")
    price_override_set(tenant=acme, provider_model=gpt.model, output_per_million="12.00")
    exchange_rate_fix(currency="EUR", month="2025-01", rate="0.95")
    line(acme, local("2025-01-01 00:00", "Europe/Paris"), gpt, prompt=12_345, cached=2_000)
    line(acme, local("2025-01-31 23:59:59", "Europe/Paris"), gpt, completion=777)
    line(acme, local("2025-02-01 00:00", "Europe/Paris"), gpt)  # February
    draft = statement_get(tenant_slug="acme", month="2025-01")
    assert draft.number is None and draft.closed_at is None
    assert sum(x.quantity for x in draft.lines if x.token_kind == "output") == 500 + 777
    [issued] = period_close(month="2025-01", tenant_slug="acme")
    view = statement_get(tenant_slug="acme", month="2025-01")
    assert view.number == issued.number
    assert view.lines == draft.lines
    assert (view.subtotal_usd, view.markup_usd, view.total_usd, view.total) == (
        draft.subtotal_usd,
        draft.markup_usd,
        draft.total_usd,
        draft.total,
    )
    # 11,345 input and 2,000 cached at 3.00, 1,277 output at 12.00: 0.055359 USD, plus
    # 12.5%: 0.062278875 USD, at 0.95: 0.0591649 EUR.
    assert view.total_usd == Decimal("0.0622788750")
    assert str(view.total) == "0.06"


def test_the_first_open_months_draft_shows_late_usage_as_adjustments(acme, globex):
    gpt = priced_model()
    line(acme, local("2025-01-10 10:00"), gpt)
    period_close(month="2025-01", tenant_slug="acme")
    line(acme, local("2025-01-11 10:00"), gpt, prompt=4000)  # after the close
    draft = statement_get(tenant_slug="acme", month="2025-02")
    assert [(x.adjustment_of, x.token_kind, x.quantity) for x in draft.lines] == [
        ("2025-01", "input", 4000),
        ("2025-01", "output", 500),
    ]
    assert draft.subtotal_usd == 0 and draft.adjustments_usd == Decimal("0.005")
    # A later open month does not bill them too.
    assert statement_get(tenant_slug="acme", month="2025-03").lines == []
    # A closed month that had nothing to bill has no statement.
    line(globex, local("2025-03-10 10:00"), gpt)
    period_close(month="2025-03", tenant_slug="globex")
    with pytest.raises(StatementError, match="no statement"):
        statement_get(tenant_slug="globex", month="2025-02")
