"""Which statements a report covers: the Usage & billing page links each tenant's month
in the report's period to its statement (issued, or a draft while the month is open)."""

from __future__ import annotations

from calendar import monthrange
from dataclasses import dataclass
from datetime import date

from django.db.models.functions import TruncMonth

from billing.models import DailyUsage, Statement
from billing.reports import ReportQuery


@dataclass(frozen=True)
class StatementLink:
    tenant_slug: str
    month: str  # "YYYY-MM"
    number: str | None  # None: the month is still open (its statement is a draft)


def report_days(query: ReportQuery) -> tuple[date | None, date | None]:
    """The billing days a query covers, both ends included (None: open-ended). Roll-up
    days are already tenant-local, so a month is its calendar days for every tenant."""
    if query.month:
        year, month = (int(part) for part in query.month.split("-"))
        return date(year, month, 1), date(year, month, monthrange(year, month)[1])
    return query.start, query.end


def statement_links(*, query: ReportQuery, limit: int = 200) -> list[StatementLink]:
    """The (tenant, month) pairs with usage in the query's period, with the number of the
    statement of those already closed: two queries."""
    first, last = report_days(query)
    rows = DailyUsage.objects.all()
    if query.tenant_slug:
        rows = rows.filter(tenant_slug=query.tenant_slug)
    if first is not None:
        rows = rows.filter(day__gte=first)
    if last is not None:
        rows = rows.filter(day__lte=last)
    pairs = sorted(
        {
            (slug, f"{month:%Y-%m}")
            for slug, month in rows.annotate(month=TruncMonth("day"))
            .values_list("tenant_slug", "month")
            .distinct()
            .order_by()[:limit]
        }
    )
    months = {month for _, month in pairs}
    numbers = {
        (slug, month): number
        for slug, month, number in Statement.objects.filter(month__in=months).values_list(
            "tenant_slug", "month", "number"
        )
    }
    return [StatementLink(slug, month, numbers.get((slug, month))) for slug, month in pairs]
