"""Traffic figures over a window of the audit log, for the admin's dashboard.

Both reads are bounded by `created_at` (indexed), so their cost follows the rows of the
last day, never the table's size. Latency percentiles are percentile_cont (linear interpolation
between the closest ranks) in SQL on Postgres; SQLite has no ordered-set aggregates, and
there the window's latencies are read and the same interpolation done in Python (the
embedded setup is small).

An error is a 5xx answer (the gateway or every upstream failed). A request the gateway
refused (`rejected`: a bad key, a limit, bad input) is counted apart, and left out of the
latency figures: answered in microseconds, it would drag them down and say nothing about
the upstreams.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

from django.db import connections
from django.db.models import Count, Q
from django.db.models.functions import TruncHour

from audit.models import AuditEvent
from tenants.models import Tenant

_REJECTED = AuditEvent.Outcome.REJECTED.value
_ERRORS = Q(status_code__gte=500)
# Both windows in one pass over the day's rows: the last hour is a FILTER of the day.
_PERCENTILES_SQL = """
SELECT percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY latency_ms)
           FILTER (WHERE outcome <> %(rejected)s),
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY latency_ms)
           FILTER (WHERE outcome <> %(rejected)s AND created_at >= %(recent)s)
FROM {table}
WHERE created_at >= %(start)s AND created_at < %(end)s
"""


@dataclass(frozen=True)
class TrafficWindow:
    start: datetime
    end: datetime
    requests: int
    errors: int  # 5xx answers
    refused: int  # rejected by the gateway itself
    p50_ms: float | None  # None: no request in the window that was not refused
    p95_ms: float | None

    @property
    def error_rate(self) -> Decimal | None:
        """Errors as a percentage of every request, to a tenth; None with no request."""
        if not self.requests:
            return None
        return (Decimal(self.errors) * 100 / self.requests).quantize(
            Decimal("0.1"), rounding=ROUND_HALF_EVEN
        )


@dataclass(frozen=True)
class HourCount:
    hour: datetime  # the hour's start, UTC
    requests: int
    errors: int


@dataclass(frozen=True)
class TenantTraffic:
    tenant_slug: str  # "": no tenant (an unknown key), or one deleted since
    requests: int
    errors: int


def percentile_cont(ordered: list[int], fraction: float) -> float | None:
    """Postgres's percentile_cont over values already sorted: the value at rank
    fraction * (n - 1), interpolated between its neighbours."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return float(ordered[low] + (ordered[high] - ordered[low]) * (position - low))


@dataclass(frozen=True)
class TrafficSummary:
    last_hour: TrafficWindow
    last_day: TrafficWindow
    hours: list[HourCount]  # the day's hours, oldest first, empty ones at zero
    top_tenants: list[TenantTraffic]  # by requests over the day, most first


def _latency_percentiles(
    start: datetime, recent: datetime, end: datetime, db: str
) -> tuple[tuple[float | None, float | None], tuple[float | None, float | None]]:
    """(p50, p95) of the requests answered in [start, end), then of those since `recent`."""
    connection = connections[db]
    if connection.vendor == "postgresql":
        sql = _PERCENTILES_SQL.format(table=connection.ops.quote_name(AuditEvent._meta.db_table))
        with connection.cursor() as cursor:
            cursor.execute(
                sql, {"rejected": _REJECTED, "start": start, "recent": recent, "end": end}
            )
            day, hour = cursor.fetchone()
        return (tuple(day) if day else (None, None)), (tuple(hour) if hour else (None, None))
    rows = (
        AuditEvent.objects.using(db)
        .filter(created_at__gte=start, created_at__lt=end)
        .exclude(outcome=_REJECTED)
        .values_list("created_at", "latency_ms")
    )
    every: list[int] = []
    latest: list[int] = []
    for created_at, latency in rows.iterator():
        every.append(latency)
        if created_at >= recent:
            latest.append(latency)
    every.sort()
    latest.sort()
    return (
        (percentile_cont(every, 0.5), percentile_cont(every, 0.95)),
        (percentile_cont(latest, 0.5), percentile_cont(latest, 0.95)),
    )


def traffic_summary(*, end: datetime, top: int = 5) -> TrafficSummary:
    """The last hour and the last 24 hours before `end`: two reads of the day's rows, one
    grouped by hour and tenant (the counts of both windows, the chart, the top tenants),
    one for the latency percentiles of both windows. Both read only columns the
    `audit_time` index carries (so counts of created_at, never null, and the tenant's id,
    not its slug): on Postgres neither visits the table's rows."""
    start, recent = end - timedelta(hours=24), end - timedelta(hours=1)
    rows = AuditEvent.objects.filter(created_at__gte=start, created_at__lt=end)
    is_recent = Q(created_at__gte=recent)
    groups = (
        rows.annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour", "tenant_id")
        .annotate(
            requests=Count("created_at"),
            errors=Count("created_at", filter=_ERRORS),
            refused=Count("created_at", filter=Q(outcome=_REJECTED)),
            recent_requests=Count("created_at", filter=is_recent),
            recent_errors=Count("created_at", filter=is_recent & _ERRORS),
            recent_refused=Count("created_at", filter=is_recent & Q(outcome=_REJECTED)),
        )
        .order_by()
    )
    hours: dict[datetime, list[int]] = {}
    tenants: dict[int | None, list[int]] = {}
    day = [0, 0, 0]
    hour = [0, 0, 0]
    for group in groups:
        counts = (group["requests"], group["errors"], group["refused"])
        for totals in (
            hours.setdefault(group["hour"], [0, 0, 0]),
            tenants.setdefault(group["tenant_id"], [0, 0, 0]),
            day,
        ):
            for index, count in enumerate(counts):
                totals[index] += count
        hour[0] += group["recent_requests"]
        hour[1] += group["recent_errors"]
        hour[2] += group["recent_refused"]
    (day_p50, day_p95), (hour_p50, hour_p95) = _latency_percentiles(start, recent, end, rows.db)
    return TrafficSummary(
        last_hour=_window(recent, end, hour, hour_p50, hour_p95),
        last_day=_window(start, end, day, day_p50, day_p95),
        hours=_every_hour(hours, start, end),
        top_tenants=_top_tenants(tenants, top),
    )


def _window(
    start: datetime, end: datetime, counts: list[int], p50: float | None, p95: float | None
) -> TrafficWindow:
    requests, errors, refused = counts
    return TrafficWindow(start, end, requests, errors, refused, p50_ms=p50, p95_ms=p95)


def _top_tenants(counted: dict[int | None, list[int]], top: int) -> list[TenantTraffic]:
    """The `top` tenants by requests, named (one query for their slugs; None: requests no
    tenant was found for, or whose tenant was deleted since)."""
    slugs = dict(
        Tenant.objects.filter(id__in=[i for i in counted if i is not None]).values_list(
            "id", "slug"
        )
    )
    named = [
        (slugs.get(tenant_id, "") if tenant_id else "", counts)
        for tenant_id, counts in counted.items()
    ]
    ranked = sorted(named, key=lambda item: (-item[1][0], item[0]))[:top]
    return [TenantTraffic(slug, counts[0], counts[1]) for slug, counts in ranked]


def _every_hour(
    counted: dict[datetime, list[int]], start: datetime, end: datetime
) -> list[HourCount]:
    hours = []
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        requests, errors, _ = counted.get(hour, (0, 0, 0))
        hours.append(HourCount(hour, requests, errors))
        hour += timedelta(hours=1)
    return hours
