"""Usage reports over the daily roll-ups (billing.models.DailyUsage): what the admin's
Usage & billing page, the exports, `manage.py billing_report` and /api/v1/billing/ show.

`parse_report_query(params)` turns request or command-line parameters into a
`ReportQuery`, raising `ReportQueryError` (a ValueError) with a message fit for the user on
bad input; `usage_report(query)` returns a `Report`.

A report is aggregated by the database over the roll-ups, never over the ledger: a month
of a million requests is a few thousand DailyUsage rows. Days are each tenant's billing
days (DailyUsage.day is a calendar day in the tenant's zone), so "month 2027-03" is March
in every tenant's own time zone. Usage of a closed month that arrived after its close is
rolled into the first day of the tenant's next open month (DailyUsage.late), and so
counted in the month whose statement bills it: a month's report total is that month's
statement subtotal plus adjustments, at list prices (the ledger's cost_usd, USD).

Every grouping partitions the roll-up rows (a request has one tag set, and one value or
none for any tag), so the rows never count a request twice and the total is their sum."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import F, JSONField, Max, QuerySet, Sum, Value
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, NullIf

from billing.models import DailyUsage, RollupCursor
from gateway_project.lib.money_sum import money_sum, money_value
from tenants.models import Tenant

GROUP_BY = ("model", "route", "key", "tag", "day", "tenant")


class ReportQueryError(ValueError):
    """Bad report parameters; the message says which and why, `param` names the one."""

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class ReportQuery:
    tenant_slug: str | None = None  # None: every tenant
    month: str | None = None  # "YYYY-MM": the billing month, in each tenant's time zone
    start: date | None = None  # or a range of billing days, both ends included
    end: date | None = None
    group_by: str = "model"  # one of GROUP_BY
    tag_key: str | None = None  # with group_by="tag": by this tag's value, else by tag set


@dataclass(frozen=True)
class ReportRow:
    group: str  # the group's label ("" for the total row)
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    total_tokens: int = 0
    cost: Decimal = Decimal(0)  # USD, list prices, 10 places


@dataclass(frozen=True)
class SeriesPoint:
    day: date
    total_tokens: int
    cost: Decimal


@dataclass(frozen=True)
class Report:
    query: ReportQuery
    rows: list[ReportRow]
    total: ReportRow
    series: list[SeriesPoint] = field(default_factory=list)  # per day, for the chart
    as_of: datetime | None = None  # when the roll-ups were last built


# --- parameters ------------------------------------------------------------------------------

MAX_RANGE_DAYS = 366
NONE_LABEL = "(none)"
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])\Z")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}\Z")
_PARAMETERS = ("tenant", "month", "start", "end", "group_by", "tag_key")


def _day(value: str, param: str) -> date:
    try:
        if not _DAY.match(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise ReportQueryError(
            f"A date is written YYYY-MM-DD, not {value[:40]!r}.", param=param
        ) from None


def month_days(month: str) -> tuple[date, date]:
    """The first and last day of month "YYYY-MM"."""
    first = date.fromisoformat(f"{month}-01")
    following = date(first.year + first.month // 12, first.month % 12 + 1, 1)
    return first, following - timedelta(days=1)


def parse_report_query(params: Mapping[str, str]) -> ReportQuery:
    """A ReportQuery from `tenant`, `month` (YYYY-MM) or `start` and `end` (YYYY-MM-DD,
    both included), `group_by` and `tag_key`; empty values count as absent (HTML forms
    send them), other keys are ignored (a page number). Raises ReportQueryError."""
    raw = {name: (params.get(name) or "").strip() for name in _PARAMETERS}
    tenant = raw["tenant"] or None
    if tenant is not None and not Tenant.objects.filter(slug=tenant).exists():
        raise ReportQueryError(f"There is no tenant {tenant[:100]!r}.", param="tenant")
    group_by = raw["group_by"] or "model"
    if group_by not in GROUP_BY:
        raise ReportQueryError(
            f"A report is grouped by {', '.join(GROUP_BY)}, not {group_by[:40]!r}.",
            param="group_by",
        )
    tag_key = raw["tag_key"] or None
    if tag_key is not None and group_by != "tag":
        raise ReportQueryError("A tag key goes with group_by=tag.", param="tag_key")
    if tag_key is not None and len(tag_key) > 100:
        raise ReportQueryError("A tag key is at most 100 characters.", param="tag_key")
    month, start, end = _period(raw)
    return ReportQuery(tenant, month, start, end, group_by, tag_key)


def _period(raw: Mapping[str, str]) -> tuple[str | None, date | None, date | None]:
    if raw["month"]:
        if raw["start"] or raw["end"]:
            raise ReportQueryError("Give a month or a start and end, not both.", param="month")
        if not _MONTH.match(raw["month"]):
            raise ReportQueryError(
                f"A month is written YYYY-MM, not {raw['month'][:40]!r}.", param="month"
            )
        return raw["month"], None, None
    if not raw["start"] and not raw["end"]:
        raise ReportQueryError(
            "Give a month (YYYY-MM) or a start and end date (YYYY-MM-DD).", param="month"
        )
    for param in ("start", "end"):
        if not raw[param]:
            raise ReportQueryError(f"A date range needs its {param} too.", param=param)
    start, end = _day(raw["start"], "start"), _day(raw["end"], "end")
    if end < start:
        raise ReportQueryError("end is before start.", param="end")
    if (end - start).days + 1 > MAX_RANGE_DAYS:
        raise ReportQueryError(
            f"A report covers at most {MAX_RANGE_DAYS} days; this range has "
            f"{(end - start).days + 1}.",
            param="end",
        )
    return None, start, end


def query_days(query: ReportQuery) -> tuple[date, date]:
    """The first and last billing day a query covers."""
    if query.month is not None:
        return month_days(query.month)
    if query.start is None or query.end is None:
        raise ReportQueryError("A report needs a month or a start and end date.", param="month")
    return query.start, query.end


def query_parameters(query: ReportQuery) -> dict[str, str]:
    """The query as parameters parse_report_query reads back (to store or link it)."""
    values = {
        "tenant": query.tenant_slug,
        "month": query.month,
        "start": query.start.isoformat() if query.start else None,
        "end": query.end.isoformat() if query.end else None,
        "group_by": query.group_by,
        "tag_key": query.tag_key,
    }
    return {name: value for name, value in values.items() if value}


# --- the report ------------------------------------------------------------------------------

_COUNTS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
)
_GROUP_COLUMNS: dict[str, tuple[str, ...]] = {
    "model": ("provider", "model"),
    "route": ("route",),
    "key": ("key_prefix",),
    "tag": ("tags",),
    "day": ("day",),
    "tenant": ("tenant_slug",),
}


def usage_rows(query: ReportQuery) -> QuerySet[DailyUsage]:
    """The roll-up rows a query covers (its tenant, its days)."""
    first, last = query_days(query)
    rows = DailyUsage.objects.filter(day__gte=first, day__lte=last)
    if query.tenant_slug is not None:
        rows = rows.filter(tenant_id__in=Tenant.objects.filter(slug=query.tenant_slug).values("id"))
    return rows


def tag_label(tags: str) -> str:
    """A tag set as "k=v, k2=v2" (keys sorted), "(none)" for a request without tags."""
    if not tags:
        return NONE_LABEL
    try:
        parsed = json.loads(tags)
    except ValueError:
        return tags
    if not isinstance(parsed, dict) or not parsed:
        return NONE_LABEL
    return ", ".join(f"{key}={parsed[key]}" for key in sorted(parsed))


def _label(group_by: str, values: Mapping[str, Any], tag_key: str | None) -> str:
    if group_by == "model":
        provider, model = values["provider"], values["model"]
        return f"{provider}/{model}" if provider or model else NONE_LABEL
    if group_by == "tag":
        if tag_key is not None:
            return str(values["tag_value"]) if values["tag_value"] is not None else NONE_LABEL
        return tag_label(values["tags"])
    if group_by == "day":
        return values["day"].isoformat()
    column = _GROUP_COLUMNS[group_by][0]
    return str(values[column]) or NONE_LABEL


def _sums() -> dict[str, Any]:
    sums: dict[str, Any] = {name: Sum(name) for name in _COUNTS}
    sums["cost"] = money_sum("cost_usd")
    return sums


def _row(group: str, values: Mapping[str, Any]) -> ReportRow:
    counts = {name: int(values[name] or 0) for name in _COUNTS}
    return ReportRow(group, cost=money_value(values["cost"]), **counts)


def _grouped(query: ReportQuery, rows: QuerySet[DailyUsage]) -> list[ReportRow]:
    columns: tuple[str, ...] = _GROUP_COLUMNS[query.group_by]
    if query.group_by == "tag" and query.tag_key is not None:
        # The tag's value, read by the database from each row's tag set ("" is no JSON).
        tag_set = Cast(NullIf(F("tags"), Value("")), JSONField())
        rows = rows.annotate(tag_value=KeyTextTransform(query.tag_key, tag_set))
        columns = ("tag_value",)
    grouped = rows.values(*columns).annotate(**_sums())
    if query.group_by == "day":
        grouped = grouped.order_by("day")
    else:
        grouped = grouped.order_by("-cost", *columns)
    return [_row(_label(query.group_by, values, query.tag_key), values) for values in grouped]


def _series(query: ReportQuery, rows: QuerySet[DailyUsage]) -> list[SeriesPoint]:
    """One point per day of the query, days without usage at zero (the chart's x axis)."""
    by_day = {
        values["day"]: values
        for values in rows.values("day").annotate(
            tokens=Sum("total_tokens"), cost=money_sum("cost_usd")
        )
    }
    first, last = query_days(query)
    points = []
    for offset in range((last - first).days + 1):
        day = first + timedelta(days=offset)
        values = by_day.get(day)
        tokens = int(values["tokens"] or 0) if values else 0
        cost = money_value(values["cost"]) if values else Decimal(0)
        points.append(SeriesPoint(day, tokens, cost))
    return points


def _total(rows: list[ReportRow]) -> ReportRow:
    counts = {name: sum(getattr(row, name) for row in rows) for name in _COUNTS}
    return ReportRow("", cost=sum((row.cost for row in rows), Decimal(0)), **counts)


def _as_of(rows: QuerySet[DailyUsage]) -> datetime | None:
    """When the incremental roll-up last ran, else when these rows were built."""
    cursor = RollupCursor.objects.filter(name="ledger").values_list("updated_at", flat=True)
    ran = cursor.first()
    if ran is not None:
        return ran
    built: datetime | None = rows.aggregate(built=Max("built_at"))["built"]
    return built


def usage_report(query: ReportQuery) -> Report:
    """The query's usage by group, its total (the rows' sum: every grouping partitions the
    roll-ups) and its daily series; four queries whatever the period."""
    rows = usage_rows(query)
    grouped = _grouped(query, rows)
    return Report(query, grouped, _total(grouped), _series(query, rows), _as_of(rows))
