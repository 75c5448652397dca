"""A statement's text (billing/statement_format.py), shared by its page and its PDF."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from billing.statement_format import price_per_million, statement_text, usd
from billing.statements import StatementLineView, StatementView


def view(**changes) -> StatementView:
    values = dict(
        number=None, tenant_slug="acme", tenant_name="Acme", month="2026-03",
        period_start=datetime(2026, 2, 28, 23, tzinfo=UTC),
        period_end=datetime(2026, 3, 31, 22, tzinfo=UTC), time_zone="Europe/Paris",
        currency="JPY", exchange_rate=None, markup_percent=Decimal("12.50"),
        lines=[
            StatementLineView("", "openai", "gpt", "cached_input", 1_000, Decimal("0.125"),
                              Decimal("0.000125")),
            StatementLineView("2026-02", "", "gpt", "output", 10, Decimal("10"),
                              Decimal("0.0001")),
        ],
        subtotal_usd=Decimal("0.000125"), adjustments_usd=Decimal("0.0001"),
        markup_usd=Decimal("0.0000281250"), total_usd=Decimal("0.0002531250"), total=None,
        closed_at=None,
    )  # fmt: skip
    return StatementView(**{**values, **changes})


def test_money_is_shown_to_the_cent_half_even_and_prices_as_set():
    assert [usd(Decimal(v)) for v in ("0.125", "0.135", "-1.275", "1234.5")] == [
        "$0.12", "$0.14", "-$1.28", "$1,234.50",
    ]  # fmt: skip
    assert usd(Decimal("0.000125"), 4) == "$0.0001"
    assert [price_per_million(Decimal(v)) for v in ("2.500000", "0.125", "100")] == [
        "$2.50 / 1M", "$0.125 / 1M", "$100.00 / 1M",
    ]  # fmt: skip


def test_a_draft_in_a_foreign_currency_says_its_rate_is_not_fixed():
    text = statement_text(view())

    assert (text.title, text.number, text.is_draft) == ("Statement DRAFT", "DRAFT", True)
    # Local midnight to local midnight, across the change to summer time.
    assert text.period == "2026-03-01 00:00 to 2026-04-01 00:00 (Europe/Paris)"
    assert text.rate == "not fixed yet for 2026-03 (set when the month closes)"
    assert text.total == "pending: no JPY rate for 2026-03 yet"
    assert text.markup_label == "Markup (12.5%)"
    assert [line.kind for line in text.lines] == ["cached input tokens"]
    assert [(line.model, line.adjustment_of) for line in text.adjustments] == [("gpt", "2026-02")]


def test_an_issued_statement_shows_its_total_in_the_currencys_minor_unit():
    text = statement_text(
        view(
            number="ST-2026-000001",
            exchange_rate=Decimal("151.25000000"),
            total=Decimal("1235.0000"),
            markup_percent=Decimal("-5"),
            closed_at=datetime(2026, 4, 1, 1, 30, tzinfo=UTC),
        )
    )

    assert text.title == "Statement ST-2026-000001" and not text.is_draft
    assert text.rate == "1 USD = 151.25 JPY"
    assert text.total == "JPY 1,235"
    assert text.markup_label == "Discount (5%)"
    assert text.closed == "closed 2026-04-01 01:30 UTC"
