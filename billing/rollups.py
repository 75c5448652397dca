"""Daily roll-ups of the usage ledger (billing.models.DailyUsage), what reports read.

A (tenant, billing day) is rebuilt whole from the ledger, its old rows deleted and the new
ones inserted in one transaction, so running it again gives the same rows. The day is a
calendar day in the tenant's billing time zone. Days of closed months are left as the
close built them (billing.closing); lines that arrive for a closed month are rolled into
the first day of the tenant's first open month, flagged late, until the statement of that
month bills them.

`rollup_pending` (Celery beat, `manage.py billing_rollup`) finds the days that ledger lines
written since its last run belong to (billing.rollup_cursor).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import connection, transaction
from django.db.models import Q
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import DailyUsage, TenantTerms, UsageLine
from billing.period_state import (
    BillingState,
    billing_state_get,
    day_bounds,
    lock_tenant_billing,
)
from billing.rollup_cursor import pending_window
from billing.rollup_sql import LinePart, rollup_rows_insert
from tenants.models import Tenant


@dataclass(frozen=True)
class RollupSummary:
    days: int  # (tenant, day) roll-ups rebuilt
    rows: int  # DailyUsage rows written
    cursor: int | None = None  # the ledger cursor after the run (rollup_pending)


def _open_day_parts(state: BillingState, day: date) -> list[LinePart]:
    start, end = day_bounds(day=day, time_zone=state.time_zone)
    if state.closed_until is not None:
        start = max(start, state.closed_until)
    parts = [
        LinePart(
            late=False,
            lines=Q(created_at__gte=start, created_at__lt=end, statement_id__isnull=True),
        )
    ]
    if state.closed_until is not None and day == state.first_open_day:
        parts.append(
            LinePart(
                late=True,
                lines=Q(created_at__lt=state.closed_until, statement_id__isnull=True),
            )
        )
    return parts


def rebuild_day(*, tenant_id: int, day: date, parts: list[LinePart]) -> int:
    """Replace the tenant's rows of `day` by the roll-up of `parts`, in the caller's
    transaction (or one of its own)."""
    with transaction.atomic():
        DailyUsage.objects.filter(tenant_id=tenant_id, day=day).delete()
        return rollup_rows_insert(
            tenant_id=tenant_id, day=day, parts=parts, built_at=timezone.now()
        )


def rollup_day(*, tenant_id: int, day: date) -> int:
    """Rebuild the tenant's roll-up of one billing day from the ledger; the rows written
    (0 for a day of a closed month, which is never rebuilt)."""
    with transaction.atomic():
        lock_tenant_billing(tenant_id)
        state = billing_state_get(tenant_id=tenant_id)
        if state.day_is_closed(day):
            return 0
        return rebuild_day(tenant_id=tenant_id, day=day, parts=_open_day_parts(state, day))


def _tenant_days_postgres(first_id: int, last_id: int) -> set[tuple[int, date]]:
    """The (tenant, local day) of the unbilled lines with ids in (first_id, last_id]."""
    sql = f"""
        SELECT DISTINCT l.tenant_id,
               (l.created_at AT TIME ZONE coalesce(t.time_zone, 'UTC'))::date
        FROM {UsageLine._meta.db_table} AS l
        LEFT JOIN {TenantTerms._meta.db_table} AS t ON t.tenant_id = l.tenant_id
        WHERE l.id > %s AND l.id <= %s AND l.tenant_id IS NOT NULL
          AND l.statement_id IS NULL
    """
    with connection.cursor() as cursor:
        cursor.execute(sql, [first_id, last_id])
        return {(tenant_id, day) for tenant_id, day in cursor.fetchall()}


def _tenant_days_orm(first_id: int, last_id: int) -> set[tuple[int, date]]:
    lines = UsageLine.objects.filter(
        id__gt=first_id, id__lte=last_id, tenant_id__isnull=False, statement_id__isnull=True
    )
    zones = dict(TenantTerms.objects.values_list("tenant_id", "time_zone"))
    pairs: set[tuple[int, date]] = set()
    for tenant_id in set(lines.values_list("tenant_id", flat=True)):
        if tenant_id is None:  # filtered out above; for the type checker
            continue
        days = (
            lines.filter(tenant_id=tenant_id)
            .annotate(day=TruncDate("created_at", tzinfo=ZoneInfo(zones.get(tenant_id, "UTC"))))
            .values_list("day", flat=True)
            .distinct()
        )
        pairs.update((tenant_id, day) for day in days)
    return pairs


def _rollup_line_days(tenant_id: int, days: set[date]) -> RollupSummary:
    """Rebuild the days ledger lines of the tenant were created on, each line's own, or
    for a day already closed the first open day (a late line is rolled up there until a
    statement bills it). Mapped under the tenant's lock: a close committed after the lines
    were read moves them to the new first open day, not to a day now left alone."""
    with transaction.atomic():
        lock_tenant_billing(tenant_id)
        state = billing_state_get(tenant_id=tenant_id)
        first_open = state.first_open_day
        homes = {first_open if first_open and day < first_open else day for day in days}
        rows = sum(
            rebuild_day(tenant_id=tenant_id, day=day, parts=_open_day_parts(state, day))
            for day in sorted(homes)
        )
    return RollupSummary(days=len(homes), rows=rows)


def rollup_pending() -> RollupSummary:
    """Rebuild the days of the ledger lines written since the last run; see
    billing.rollup_cursor for how lines that commit out of id order are not missed."""
    with pending_window() as window:
        if window.last_id <= window.first_id:
            return RollupSummary(days=0, rows=0, cursor=window.first_id)
        find = _tenant_days_postgres if connection.vendor == "postgresql" else _tenant_days_orm
        by_tenant: dict[int, set[date]] = {}
        for tenant_id, day in find(window.first_id, window.last_id):
            by_tenant.setdefault(tenant_id, set()).add(day)
        done = [_rollup_line_days(tenant_id, days) for tenant_id, days in sorted(by_tenant.items())]
    return RollupSummary(
        sum(each.days for each in done), sum(each.rows for each in done), window.cursor_after
    )


def rollup_date(day: date) -> RollupSummary:
    """Rebuild `day` for every tenant: those that exist, and tenants since deleted that
    have usage near it (a day is local: from 14 hours before its UTC start to 14 hours
    after its end covers every zone's day of that date) or roll-up rows on it."""
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    near = UsageLine.objects.filter(
        created_at__gte=start - timedelta(hours=14),
        created_at__lt=start + timedelta(hours=38),
        tenant_id__isnull=False,
    )
    tenants = {pk for pk in near.values_list("tenant_id", flat=True).distinct() if pk is not None}
    tenants |= set(DailyUsage.objects.filter(day=day).values_list("tenant_id", flat=True))
    # A tenant whose first open day it is may have only late lines, from any time before.
    tenants |= set(Tenant.objects.values_list("id", flat=True))
    rows = sum(rollup_day(tenant_id=tenant_id, day=day) for tenant_id in sorted(tenants))
    return RollupSummary(days=len(tenants), rows=rows)
