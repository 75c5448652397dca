"""Closing billing months: each closed month of a tenant becomes a numbered, immutable
Statement that bills its ledger lines.

Months close in order per tenant: closing M first closes every earlier month of the
tenant that is still open and has usage, each with its own statement. A month closes
only once it has ended in the tenant's time zone plus BILLING_CLOSE_GRACE_MINUTES (the
audit writer lags, and a database outage holds rows back), and, for a statement in a
currency other than USD, once the month's exchange rate is fixed.

A statement is made in one transaction: its number (gapless per calendar year of closing,
under a lock every close takes), the ledger lines it bills marked with its id (those of
the month, and those of closed months that arrived after their close, billed as
adjustments), its lines priced by billing.statements.statement_figures (as the draft was),
the roll-ups of the month's days rebuilt from exactly those lines, and the first day of
the next month rebuilt so that lines arriving for the month from now on are late there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.db.models import Max, Min, Q
from django.utils import timezone

from billing.models import Statement, StatementLine, UsageLine
from billing.period_state import (
    billing_state_get,
    day_bounds,
    lock_statement_numbering,
    lock_tenant_billing,
    month_days,
    next_month,
)
from billing.periods import billing_month_bounds, billing_month_of
from billing.rollup_sql import LinePart
from billing.rollups import rebuild_day, rollup_day
from billing.statements import StatementError, month_check, statement_figures_from_ledger
from billing.terms_selectors import Terms, exchange_rate_get, tenant_terms_get
from tenants.models import Tenant


class PeriodCloseError(ValueError):
    """A close refused or asked for wrongly; the message says why and what to do."""


class _NothingToBill(Exception):
    pass


@dataclass
class ClosePlan:
    tenant: Tenant
    months: list[str] = field(default_factory=list)  # to close, oldest first
    already_closed: bool = False


def _refusal(tenant: Tenant, month: str, terms: Terms) -> str | None:
    _, end = billing_month_bounds(month=month, time_zone=terms.time_zone)
    closable_from = end + timedelta(minutes=settings.BILLING_CLOSE_GRACE_MINUTES)
    if timezone.now() < closable_from:
        local = closable_from.astimezone(ZoneInfo(terms.time_zone))
        return (
            f"{tenant.slug}: {month} cannot be closed before {local:%Y-%m-%d %H:%M} "
            f"{terms.time_zone} (the month's end in the tenant's time zone plus "
            f"BILLING_CLOSE_GRACE_MINUTES={settings.BILLING_CLOSE_GRACE_MINUTES})."
        )
    if exchange_rate_get(currency=terms.currency, month=month) is None:
        return (
            f"{tenant.slug}: statements are in {terms.currency} and no {terms.currency} "
            f"exchange rate is fixed for {month}; fix it (commercial terms) and close again."
        )
    return None


def close_plan(tenant: Tenant, month: str) -> ClosePlan:
    """The tenant's months to close for closing `month`: its open months before it with
    unbilled usage, then `month` itself if it has any to bill (of its own, or late usage
    of closed months when it is the first to close)."""
    state = billing_state_get(tenant_id=tenant.id)
    if state.month_is_closed(month):
        return ClosePlan(tenant, already_closed=True)
    zone = state.time_zone
    start, end = billing_month_bounds(month=month, time_zone=zone)
    unbilled = UsageLine.objects.filter(tenant_id=tenant.id, statement_id__isnull=True)
    earlier = unbilled.filter(created_at__lt=start)
    if state.closed_until is not None:
        earlier = earlier.filter(created_at__gte=state.closed_until)
    plan = ClosePlan(tenant)
    while (oldest := earlier.aggregate(oldest=Min("created_at"))["oldest"]) is not None:
        plan.months.append(billing_month_of(moment=oldest, time_zone=zone))
        _, its_end = billing_month_bounds(month=plan.months[-1], time_zone=zone)
        earlier = earlier.filter(created_at__gte=its_end)
    own = unbilled.filter(created_at__gte=start, created_at__lt=end)
    if own.exists() or (not plan.months and unbilled.filter(created_at__lt=end).exists()):
        plan.months.append(month)
    return plan


def _next_number(year: int) -> str:
    prefix = f"ST-{year}-"
    last = Statement.objects.filter(number__startswith=prefix).aggregate(last=Max("number"))
    sequence = int(last["last"][len(prefix) :]) + 1 if last["last"] else 1
    return f"{prefix}{sequence:06d}"


def _rebuild_month_rollups(statement: Statement) -> None:
    """The month's days from the lines the statement bills and nothing else: a report of
    a closed month then says what its statement says, whatever the roll-ups had missed."""
    days = month_days(month=statement.month, time_zone=statement.time_zone)
    for day in days:
        start, end = day_bounds(day=day, time_zone=statement.time_zone)
        billed = Q(statement_id=statement.id)
        parts = [LinePart(False, billed & Q(created_at__gte=start, created_at__lt=end))]
        if day == days[0]:
            parts.append(LinePart(True, billed & Q(created_at__lt=statement.period_start)))
        rebuild_day(tenant_id=statement.tenant_id, day=day, parts=parts)


def _statement_make(tenant: Tenant, month: str, user: Any) -> Statement:
    terms = tenant_terms_get(tenant_id=tenant.id)
    start, end = billing_month_bounds(month=month, time_zone=terms.time_zone)
    refusal = _refusal(tenant, month, terms)
    if refusal:
        raise PeriodCloseError(refusal)
    rate = exchange_rate_get(currency=terms.currency, month=month)
    if rate is None:  # _refusal says so first; for the type checker
        raise PeriodCloseError(f"{tenant.slug}: no exchange rate for {month}.")
    now = timezone.now()
    statement = Statement.objects.create(
        number=_next_number(now.year),
        tenant=tenant,
        tenant_slug=tenant.slug,
        month=month,
        period_start=start,
        period_end=end,
        time_zone=terms.time_zone,
        currency=terms.currency,
        exchange_rate=rate,
        markup_percent=terms.markup_percent,
        subtotal_usd=0,
        adjustments_usd=0,
        markup_usd=0,
        total_usd=0,
        total=0,
        closed_at=now,
        closed_by=user if getattr(user, "pk", None) else None,
    )
    billed = UsageLine.objects.filter(
        tenant_id=tenant.id, statement_id__isnull=True, created_at__lt=end
    ).update(statement_id=statement.id)
    if not billed:
        raise _NothingToBill
    figures = statement_figures_from_ledger(
        UsageLine.objects.filter(statement_id=statement.id),
        period_start=start,
        period_end=end,
        terms=terms,
        rate=rate,
    )
    StatementLine.objects.bulk_create(
        StatementLine(
            statement=statement,
            position=position,
            adjustment_of=line.adjustment_of,
            provider=line.provider,
            model=line.model,
            price_version_id=line.price_version_id,
            token_kind=line.token_kind,
            quantity=line.quantity,
            unit_price=line.unit_price,
            amount_usd=line.amount_usd,
        )
        for position, line in enumerate(figures.lines, start=1)
    )
    statement.subtotal_usd = figures.subtotal_usd
    statement.adjustments_usd = figures.adjustments_usd
    statement.markup_usd = figures.markup_usd
    statement.total_usd = figures.total_usd
    statement.total = figures.total if figures.total is not None else 0
    statement.save()
    return statement


def _close_month(tenant: Tenant, month: str, user: Any) -> Statement | None:
    """One statement in one transaction; None when the month turned out closed already, or
    had nothing left to bill (its number is not used then: the transaction rolls back)."""
    try:
        with transaction.atomic():
            lock_statement_numbering()
            lock_tenant_billing(tenant.id)
            if billing_state_get(tenant_id=tenant.id).month_is_closed(month):
                return None
            statement = _statement_make(tenant, month, user)
            _rebuild_month_rollups(statement)
            rollup_day(tenant_id=tenant.id, day=date.fromisoformat(f"{next_month(month)}-01"))
            return statement
    except _NothingToBill:
        return None


def _tenants(month: str, tenant_slug: str | None) -> list[Tenant]:
    if tenant_slug is not None:
        tenant = Tenant.objects.filter(slug=tenant_slug).first()
        if tenant is None:
            raise PeriodCloseError(f"No tenant {tenant_slug!r}.")
        return [tenant]
    # Every zone's month ends within a day of UTC's: the plans look closer.
    _, utc_end = billing_month_bounds(month=month, time_zone="UTC")
    with_usage = UsageLine.objects.filter(
        statement_id__isnull=True, created_at__lt=utc_end + timedelta(days=1)
    ).values("tenant_id")
    return list(Tenant.objects.filter(id__in=with_usage).order_by("slug"))


def close_plans(*, month: str, tenant_slug: str | None = None) -> list[ClosePlan]:
    try:
        month_check(month)
    except StatementError as error:
        raise PeriodCloseError(str(error)) from None
    return [close_plan(tenant, month) for tenant in _tenants(month, tenant_slug)]


def close_refusals(plans: list[ClosePlan]) -> list[str]:
    """Why any month of these plans may not be closed yet (none: all may)."""
    refusals = []
    for plan in plans:
        terms = tenant_terms_get(tenant_id=plan.tenant.id)
        refusals += [r for m in plan.months if (r := _refusal(plan.tenant, m, terms))]
    return refusals


def period_close(
    *, month: str, tenant_slug: str | None = None, user: Any = None
) -> list[Statement]:
    """Close `month` ("YYYY-MM") for one tenant or every tenant with unbilled usage up to
    it; the statements made, in order. A month already closed is left as it is (closing
    again makes nothing). Nothing is closed when any month to close may not be yet: the
    error lists every reason."""
    plans = close_plans(month=month, tenant_slug=tenant_slug)
    refusals = close_refusals(plans)
    if refusals:
        raise PeriodCloseError("\n".join(refusals))
    made = []
    for plan in plans:
        for each in plan.months:
            statement = _close_month(plan.tenant, each, user)
            if statement is not None:
                made.append(statement)
    return made
