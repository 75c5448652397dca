"""Pricing arithmetic for statements: pure functions over Decimal, no database.

Amounts in USD are kept to 10 decimal places (ROUND_HALF_EVEN), as the ledger keeps them;
only the statement's final figure in its currency is rounded to that currency's minor unit.
Every step runs in a local Decimal context of 60 digits: the default 28 would make
`quantize` raise on a large token count times a large price at 10 places.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, localcontext

AMOUNT_PLACES = Decimal("1E-10")
PER_MILLION = Decimal(1_000_000)
_PRECISION = 60

# A discount takes off less than everything; a markup adds at most ten times the price.
MARKUP_MIN = Decimal(-100)  # exclusive
MARKUP_MAX = Decimal(1000)  # inclusive

LEDGER_CURRENCY = "USD"

# ISO 4217 codes a statement may be issued in, with their minor units (digits after the
# point). A short known list rather than any three letters: rounding needs the minor unit.
CURRENCY_MINOR_UNITS: dict[str, int] = {
    "USD": 2, "EUR": 2, "GBP": 2, "CHF": 2, "CAD": 2, "AUD": 2, "NZD": 2, "SEK": 2,
    "NOK": 2, "DKK": 2, "PLN": 2, "CZK": 2, "SGD": 2, "HKD": 2, "INR": 2, "BRL": 2,
    "MXN": 2, "ZAR": 2, "CNY": 2, "JPY": 0, "KRW": 0, "BHD": 3, "KWD": 3,
}  # fmt: skip


def _checked_money(value: object, what: str) -> Decimal:
    if not isinstance(value, Decimal):
        raise TypeError(f"{what} must be a Decimal, not {type(value).__name__}")
    if not value.is_finite():
        raise ValueError(f"{what} must be a finite number, not {value}")
    return value


def _checked_tokens(tokens: object) -> int:
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise ValueError(f"tokens must be a whole number of at least 0, not {tokens!r}")
    return tokens


def markup_check(markup_percent: Decimal) -> Decimal:
    """The percentage, if a markup or discount may be it (-100 < p <= 1000)."""
    value = _checked_money(markup_percent, "markup_percent")
    if not MARKUP_MIN < value <= MARKUP_MAX:
        raise ValueError(
            f"A markup or discount is a percentage above {MARKUP_MIN} and at most "
            f"{MARKUP_MAX}, not {value}."
        )
    return value


def minor_units(currency: str) -> int:
    try:
        return CURRENCY_MINOR_UNITS[currency]
    except KeyError:
        known = ", ".join(sorted(CURRENCY_MINOR_UNITS))
        raise ValueError(f"{currency!r} is not a statement currency; one of {known}.") from None


def unit_price(*, list_price: Decimal, override: Decimal | None) -> Decimal:
    """The price per million a tenant pays: its override when it has one, else the list."""
    if override is not None:
        return _checked_money(override, "override")
    return _checked_money(list_price, "list_price")


def amount_for(*, tokens: int, price_per_million: Decimal) -> Decimal:
    """What `tokens` cost at `price_per_million`, in USD to 10 places."""
    count = _checked_tokens(tokens)
    price = _checked_money(price_per_million, "price_per_million")
    with localcontext(prec=_PRECISION):
        return (count * price / PER_MILLION).quantize(AMOUNT_PLACES, rounding=ROUND_HALF_EVEN)


def markup_amount(*, subtotal: Decimal, markup_percent: Decimal) -> Decimal:
    """The markup on `subtotal` (negative for a discount), in USD to 10 places."""
    base = _checked_money(subtotal, "subtotal")
    percent = markup_check(markup_percent)
    with localcontext(prec=_PRECISION):
        return (base * percent / 100).quantize(AMOUNT_PLACES, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class PricedLine:
    unit_price: Decimal  # USD per million tokens, as charged
    amount: Decimal  # tokens at that price
    markup: Decimal  # on `amount`; negative for a discount
    total: Decimal  # amount + markup


def price_line(
    *,
    tokens: int,
    list_price: Decimal,
    override: Decimal | None = None,
    markup_percent: Decimal = Decimal(0),
) -> PricedLine:
    """One statement line: the tenant's price for `tokens`, and its markup or discount."""
    price = unit_price(list_price=list_price, override=override)
    amount = amount_for(tokens=tokens, price_per_million=price)
    markup = markup_amount(subtotal=amount, markup_percent=markup_percent)
    with localcontext(prec=_PRECISION):
        return PricedLine(price, amount, markup, amount + markup)


def to_statement_currency(*, usd: Decimal, currency: str, rate: Decimal | None) -> Decimal:
    """A USD total in the statement's currency at the period's fixed rate (units of the
    currency per US dollar), rounded to the currency's minor unit, half to even.

    USD needs no rate (or a rate of exactly 1); any other currency needs one.
    """
    total = _checked_money(usd, "usd")
    places = Decimal(1).scaleb(-minor_units(currency))
    if rate is None:
        if currency != LEDGER_CURRENCY:
            raise ValueError(f"No exchange rate to convert USD to {currency}.")
        rate = Decimal(1)
    rate = _checked_money(rate, "rate")
    if rate <= 0:
        raise ValueError(f"An exchange rate is above 0, not {rate}.")
    if currency == LEDGER_CURRENCY and rate != 1:
        raise ValueError(f"USD converts to USD at 1, not {rate}.")
    with localcontext(prec=_PRECISION):
        return (total * rate).quantize(places, rounding=ROUND_HALF_EVEN)
