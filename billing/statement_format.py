"""A statement as the text a reader sees, shared by the printable page
(templates/billing/statement.html) and the PDF (billing/statement_pdf.py), so both say
the same thing in the same words.

Line amounts keep four decimals (a line of a few thousand tokens costs fractions of a
cent, and rounding each one would make the lines disagree with their subtotal); the
subtotal, adjustments, markup and USD total are shown to the cent, half-even, as
billing.pricing rounds; the total in the statement's currency is already rounded to
its minor unit."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_EVEN, Decimal
from zoneinfo import ZoneInfo

from billing.models import StatementLine
from billing.pricing import CURRENCY_MINOR_UNITS
from billing.statements import StatementLineView, StatementView

KIND_LABELS = dict(StatementLine.TokenKind.choices)


@dataclass(frozen=True)
class LineText:
    model: str  # "provider / model"
    kind: str  # "input tokens"
    quantity: str  # "1,234,567"
    unit_price: str  # "$2.50 / 1M"
    amount: str  # "$3.0864"
    adjustment_of: str  # "" or "2026-10"


@dataclass(frozen=True)
class StatementText:
    title: str  # "Statement ST-2026-000001" or "Statement DRAFT"
    number: str  # the number, or "DRAFT"
    is_draft: bool
    tenant: str  # "Acme Corp (acme)"
    month: str
    period: str  # "2026-11-01 00:00 to 2026-12-01 00:00 (Europe/Paris)"
    currency: str
    rate: str  # "1 USD = 0.92000000 EUR", or why there is none
    lines: list[LineText]
    adjustments: list[LineText]
    subtotal: str
    adjustments_total: str
    markup_label: str  # "Markup (5%)" / "Discount (10%)" / "Markup (0%)"
    markup: str
    total_usd: str
    total: str  # "EUR 113.27", or "not available: ..." without a rate
    closed: str  # "closed 2026-12-01 10:00 UTC", or "not closed: figures may change"


def usd(value: Decimal, places: int = 2) -> str:
    quantum = Decimal(1).scaleb(-places)
    rounded = value.quantize(quantum, rounding=ROUND_HALF_EVEN)
    sign = "-" if rounded < 0 else ""
    return f"{sign}${abs(rounded):,}"


def price_per_million(value: Decimal) -> str:
    """Unit prices as set (up to six decimals), at least to the cent: "$2.50 / 1M"."""
    text = format(value.normalize(), "f")
    whole, _, fraction = text.partition(".")
    return f"${int(whole):,}.{fraction.ljust(2, '0')} / 1M"


def local_moment(moment: datetime, time_zone: str) -> str:
    return f"{moment.astimezone(ZoneInfo(time_zone)):%Y-%m-%d %H:%M}"


def _line(line: StatementLineView) -> LineText:
    return LineText(
        model=f"{line.provider} / {line.model}" if line.provider else line.model,
        kind=KIND_LABELS.get(line.token_kind, line.token_kind),
        quantity=f"{line.quantity:,}",
        unit_price=price_per_million(line.unit_price),
        amount=usd(line.amount_usd, 4),
        adjustment_of=line.adjustment_of,
    )


def _rate(view: StatementView) -> str:
    if view.currency == "USD":
        return "USD: no conversion"
    if view.exchange_rate is None:
        return f"not fixed yet for {view.month} (set when the month closes)"
    return f"1 USD = {format(view.exchange_rate.normalize(), 'f')} {view.currency}"


def _markup_label(percent: Decimal) -> str:
    shown = format(abs(percent).normalize(), "f")
    return f"Discount ({shown}%)" if percent < 0 else f"Markup ({shown}%)"


def statement_text(view: StatementView) -> StatementText:
    number = view.number or "DRAFT"
    places = CURRENCY_MINOR_UNITS.get(view.currency, 2)
    total = (
        f"{view.currency} {view.total.quantize(Decimal(1).scaleb(-places)):,}"
        if view.total is not None
        else f"pending: no {view.currency} rate for {view.month} yet"
    )
    closed = (
        f"closed {view.closed_at.astimezone(ZoneInfo('UTC')):%Y-%m-%d %H:%M} UTC"
        if view.closed_at is not None
        else "not closed: a draft, figures may still change"
    )
    period = (
        f"{local_moment(view.period_start, view.time_zone)} to "
        f"{local_moment(view.period_end, view.time_zone)} ({view.time_zone})"
    )
    return StatementText(
        title=f"Statement {number}",
        number=number,
        is_draft=view.number is None,
        tenant=f"{view.tenant_name} ({view.tenant_slug})",
        month=view.month,
        period=period,
        currency=view.currency,
        rate=_rate(view),
        lines=[_line(line) for line in view.lines if not line.adjustment_of],
        adjustments=[_line(line) for line in view.lines if line.adjustment_of],
        subtotal=usd(view.subtotal_usd),
        adjustments_total=usd(view.adjustments_usd),
        markup_label=_markup_label(view.markup_percent),
        markup=usd(view.markup_usd),
        total_usd=usd(view.total_usd),
        total=total,
        closed=closed,
    )
