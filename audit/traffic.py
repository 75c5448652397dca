"""Traffic figures over a window of the audit log, for the admin's dashboard.

Each read is bounded by `created_at` (indexed), so its cost follows the rows in the window,
never the table's size. Latency percentiles are percentile_cont (linear interpolation
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

_REJECTED = AuditEvent.Outcome.REJECTED.value
_ERRORS = Q(status_code__gte=500)
_PERCENTILES_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE status_code >= 500),
       count(*) FILTER (WHERE outcome = %(rejected)s),
       percentile_cont(ARRAY[0.5, 0.95]) WITHIN GROUP (ORDER BY latency_ms)
           FILTER (WHERE outcome <> %(rejected)s)
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
    tenant_slug: str  # "" for requests no tenant was found for (an unknown key)
    requests: int
    errors: int


def percentile_cont(ordered: list[int], fraction: float) -> float | None:
    """Postgres's percentile_cont over values already sorted: the value at rank
    fraction * (n - 1), interpolated between its neighbours."""
    if not ordered:
        return None
    position = fraction * (len(ordered) - 1)
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def traffic_window(*, start: datetime, end: datetime) -> TrafficWindow:
    """Requests, errors, refusals and the p50 / p95 latency of rows created in [start, end)."""
    rows = AuditEvent.objects.filter(created_at__gte=start, created_at__lt=end)
    connection = connections[rows.db]
    if connection.vendor == "postgresql":
        sql = _PERCENTILES_SQL.format(table=connection.ops.quote_name(AuditEvent._meta.db_table))
        with connection.cursor() as cursor:
            cursor.execute(sql, {"rejected": _REJECTED, "start": start, "end": end})
            requests, errors, refused, percentiles = cursor.fetchone()
        p50, p95 = percentiles if percentiles else (None, None)
    else:
        counts = rows.aggregate(
            requests=Count("id"),
            errors=Count("id", filter=_ERRORS),
            refused=Count("id", filter=Q(outcome=_REJECTED)),
        )
        requests, errors, refused = counts["requests"], counts["errors"], counts["refused"]
        latencies = sorted(
            rows.exclude(outcome=_REJECTED).values_list("latency_ms", flat=True).iterator()
        )
        p50, p95 = percentile_cont(latencies, 0.5), percentile_cont(latencies, 0.95)
    return TrafficWindow(
        start=start,
        end=end,
        requests=requests,
        errors=errors,
        refused=refused,
        p50_ms=None if p50 is None else float(p50),
        p95_ms=None if p95 is None else float(p95),
    )


def traffic_by_hour(*, start: datetime, end: datetime) -> list[HourCount]:
    """Requests and errors per UTC hour from `start`'s hour to `end`'s, empty hours
    included (zeros), oldest first."""
    counted = {
        row["hour"]: row
        for row in AuditEvent.objects.filter(created_at__gte=start, created_at__lt=end)
        .annotate(hour=TruncHour("created_at", tzinfo=UTC))
        .values("hour")
        .annotate(requests=Count("id"), errors=Count("id", filter=_ERRORS))
        .order_by()
    }
    hours = []
    hour = start.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    while hour < end:
        row = counted.get(hour)
        hours.append(HourCount(hour, row["requests"] if row else 0, row["errors"] if row else 0))
        hour += timedelta(hours=1)
    return hours


def top_tenants_by_requests(
    *, start: datetime, end: datetime, limit: int = 5
) -> list[TenantTraffic]:
    """The tenants with the most requests in [start, end), most first (by slug: every row
    carries it, so no join)."""
    rows = (
        AuditEvent.objects.filter(created_at__gte=start, created_at__lt=end)
        .values("tenant_slug")
        .annotate(requests=Count("id"), errors=Count("id", filter=_ERRORS))
        .order_by("-requests", "tenant_slug")[:limit]
    )
    return [TenantTraffic(row["tenant_slug"], row["requests"], row["errors"]) for row in rows]
