"""Monthly statements as data, for the printable page, the PDF, the API and the exports.

CONTRACT (shared by the helpers building this issue):
`statement_get(tenant_slug=..., month=...)` returns a `StatementView`: an issued statement
(billing.models.Statement, immutable) when the month is closed, else a draft computed from
the ledger now (number None). Bad input raises `StatementError` (a ValueError) with a
message fit for the user.

`statement_figures` is the pricing both a draft and a close (billing.closing) go through:
one pure function from the ledger's sums to lines and totals, so an issued statement is
exactly its last draft.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from django.db.models import QuerySet

from billing import pricing
from billing.ledger_sums import LedgerSum, VersionPrices, ledger_sums, version_prices_get
from billing.models import Statement, StatementLine, UsageLine
from billing.period_state import billing_state_get
from billing.periods import billing_month_bounds
from billing.terms_selectors import OverridePrices, Terms, exchange_rate_get, tenant_terms_get
from tenants.models import Tenant

INPUT = StatementLine.TokenKind.INPUT.value
CACHED_INPUT = StatementLine.TokenKind.CACHED_INPUT.value
OUTPUT = StatementLine.TokenKind.OUTPUT.value


class StatementError(ValueError):
    """No such statement to show: an unknown tenant, a bad month, a month closed empty."""


@dataclass(frozen=True)
class StatementLineView:
    adjustment_of: str  # "" for this month's usage, else the closed month "YYYY-MM"
    provider: str
    model: str
    token_kind: str  # "input" | "cached_input" | "output"
    quantity: int  # tokens
    unit_price: Decimal  # USD per 1M tokens, as charged (override or list price)
    amount_usd: Decimal  # 10 places
    price_version_id: int = 0  # the price book version that priced it; 0 for none


@dataclass(frozen=True)
class StatementView:
    number: str | None  # None: a draft of a month still open
    tenant_slug: str
    tenant_name: str
    month: str
    period_start: datetime
    period_end: datetime
    time_zone: str
    currency: str
    exchange_rate: Decimal | None  # None: not fixed yet (a draft in a foreign currency)
    markup_percent: Decimal
    lines: list[StatementLineView]
    subtotal_usd: Decimal  # this month's lines
    adjustments_usd: Decimal  # lines of earlier months that arrived after their close
    markup_usd: Decimal  # on subtotal + adjustments; negative for a discount
    total_usd: Decimal
    total: Decimal | None  # in `currency`, rounded to its minor unit; None without a rate
    closed_at: datetime | None


@dataclass(frozen=True)
class StatementFigures:
    lines: list[StatementLineView]
    subtotal_usd: Decimal
    adjustments_usd: Decimal
    markup_usd: Decimal
    total_usd: Decimal
    total: Decimal | None  # None: a foreign currency without its month's rate


def _unit_prices(version: VersionPrices | None, override: OverridePrices) -> dict[str, Decimal]:
    """Per token kind, the price the tenant pays: its override, else the list price. The
    cached price falls back to the input price the tenant pays when neither the override
    nor the version has one (an override of the input price is then the cached one too)."""
    list_input = version.input_per_million if version else Decimal(0)
    list_output = version.output_per_million if version else Decimal(0)
    input_price = pricing.unit_price(list_price=list_input, override=override.input_per_million)
    cached_price = override.cached_input_per_million
    if cached_price is None and version is not None:
        cached_price = version.cached_input_per_million
    return {
        INPUT: input_price,
        CACHED_INPUT: input_price if cached_price is None else cached_price,
        OUTPUT: pricing.unit_price(list_price=list_output, override=override.output_per_million),
    }


def _line_order(line: LedgerSum) -> tuple:
    return (line.adjustment_of != "", line.adjustment_of, line.provider, line.model)


def statement_figures(
    sums: list[LedgerSum],
    *,
    prices: Mapping[int, VersionPrices],
    terms: Terms,
    rate: Decimal | None,
) -> StatementFigures:
    """A statement's lines and totals from the ledger's sums: a line per token kind of each
    sum that has tokens of it, at the tenant's unit price; the markup (or discount) on the
    subtotal and the adjustments together; the total in the statement's currency at the
    month's rate. A line whose price version is unknown (0) is at a list price of 0."""
    lines: list[StatementLineView] = []
    for entry in sorted(sums, key=lambda s: (*_line_order(s), s.price_version_id)):
        version = prices.get(entry.price_version_id)
        override = terms.prices_for(version.provider_model_id) if version else OverridePrices()
        unit = _unit_prices(version, override)
        quantities = (
            (INPUT, entry.input_tokens),
            (CACHED_INPUT, entry.cached_input_tokens),
            (OUTPUT, entry.output_tokens),
        )
        for kind, quantity in quantities:
            if not quantity:
                continue
            amount = pricing.amount_for(tokens=quantity, price_per_million=unit[kind])
            lines.append(
                StatementLineView(
                    entry.adjustment_of,
                    entry.provider,
                    entry.model,
                    kind,
                    quantity,
                    unit[kind],
                    amount,
                    entry.price_version_id,
                )
            )
    with localcontext(prec=60):
        subtotal = sum((line.amount_usd for line in lines if not line.adjustment_of), Decimal(0))
        adjustments = sum((line.amount_usd for line in lines if line.adjustment_of), Decimal(0))
        markup = pricing.markup_amount(
            subtotal=subtotal + adjustments, markup_percent=terms.markup_percent
        )
        total_usd = subtotal + adjustments + markup
    total = None
    if rate is not None:
        total = pricing.to_statement_currency(usd=total_usd, currency=terms.currency, rate=rate)
    return StatementFigures(lines, subtotal, adjustments, markup, total_usd, total)


def statement_figures_from_ledger(
    lines: QuerySet[UsageLine],
    *,
    period_start: datetime,
    period_end: datetime,
    terms: Terms,
    rate: Decimal | None,
) -> StatementFigures:
    sums = ledger_sums(
        lines, period_start=period_start, period_end=period_end, time_zone=terms.time_zone
    )
    prices = version_prices_get(entry.price_version_id for entry in sums)
    return statement_figures(sums, prices=prices, terms=terms, rate=rate)


def _issued(statement: Statement, tenant_name: str) -> StatementView:
    lines = [
        StatementLineView(
            line.adjustment_of,
            line.provider,
            line.model,
            line.token_kind,
            line.quantity,
            line.unit_price,
            line.amount_usd,
            line.price_version_id,
        )
        for line in statement.lines.order_by("position")
    ]
    return StatementView(
        number=statement.number,
        tenant_slug=statement.tenant_slug,
        tenant_name=tenant_name,
        month=statement.month,
        period_start=statement.period_start,
        period_end=statement.period_end,
        time_zone=statement.time_zone,
        currency=statement.currency,
        exchange_rate=statement.exchange_rate,
        markup_percent=statement.markup_percent,
        lines=lines,
        subtotal_usd=statement.subtotal_usd,
        adjustments_usd=statement.adjustments_usd,
        markup_usd=statement.markup_usd,
        total_usd=statement.total_usd,
        # Stored to 4 places, whatever the currency: shown to its own minor unit.
        total=statement.total.quantize(Decimal(1).scaleb(-pricing.minor_units(statement.currency))),
        closed_at=statement.closed_at,
    )


def _draft(tenant: Tenant, month: str, first_open_month: str | None) -> StatementView:
    """The month's statement as it would be issued now: its unbilled lines and, for the
    first open month, the late lines of closed months, as adjustments."""
    terms = tenant_terms_get(tenant_id=tenant.id)
    start, end = billing_month_bounds(month=month, time_zone=terms.time_zone)
    lines = UsageLine.objects.filter(
        tenant_id=tenant.id, statement_id__isnull=True, created_at__lt=end
    )
    if month != first_open_month:
        lines = lines.filter(created_at__gte=start)
    rate = exchange_rate_get(currency=terms.currency, month=month)
    figures = statement_figures_from_ledger(
        lines, period_start=start, period_end=end, terms=terms, rate=rate
    )
    return StatementView(
        number=None,
        tenant_slug=tenant.slug,
        tenant_name=tenant.name,
        month=month,
        period_start=start,
        period_end=end,
        time_zone=terms.time_zone,
        currency=terms.currency,
        exchange_rate=rate,
        markup_percent=terms.markup_percent,
        lines=figures.lines,
        subtotal_usd=figures.subtotal_usd,
        adjustments_usd=figures.adjustments_usd,
        markup_usd=figures.markup_usd,
        total_usd=figures.total_usd,
        total=figures.total,
        closed_at=None,
    )


def month_check(month: str) -> str:
    try:
        billing_month_bounds(month=month, time_zone="UTC")
    except ValueError as error:
        raise StatementError(str(error)) from None
    return month


def statement_get(*, tenant_slug: str, month: str) -> StatementView:
    """The tenant's statement of `month`: the issued one once the month is closed, else a
    draft from the ledger as it stands."""
    month_check(month)
    tenant = Tenant.objects.filter(slug=tenant_slug).first()
    if tenant is None:
        raise StatementError(f"No tenant {tenant_slug!r}.")
    statement = Statement.objects.filter(tenant=tenant, month=month).first()
    if statement is not None:
        return _issued(statement, tenant.name)
    state = billing_state_get(tenant_id=tenant.id)
    if state.month_is_closed(month):
        raise StatementError(
            f"{tenant_slug}'s {month} is closed and had nothing to bill: it has no statement."
        )
    return _draft(tenant, month, state.first_open_month)
