"""Budget periods on calendar boundaries in the configured time zone."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings

EPOCH = datetime(1970, 1, 1, tzinfo=ZoneInfo("UTC"))


@dataclass(frozen=True)
class Period:
    key: str  # part of the Redis key: a new period starts from zero by itself
    start: datetime  # aware; the ledger sums audit rows created in [start, end)
    end: datetime | None  # None for a total budget


def budget_timezone() -> ZoneInfo:
    return ZoneInfo(settings.GATEWAY_BUDGET_TIMEZONE)


# The current period of each kind, per time zone: every governed request asks for it, and
# it changes once a day at most. Reused only while `now` falls inside it, so it is exact.
_current: dict[tuple[str, str], Period] = {}


def period_for(kind: str, now: datetime) -> Period:
    zone = settings.GATEWAY_BUDGET_TIMEZONE
    known = _current.get((kind, zone))
    if known is not None and known.start <= now and (known.end is None or now < known.end):
        return known
    period = _compute_period(kind, now, ZoneInfo(zone))
    _current[(kind, zone)] = period
    return period


def _compute_period(kind: str, now: datetime, zone: ZoneInfo) -> Period:
    local = now.astimezone(zone)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == "daily":
        start = midnight
        end = _add_days(start, 1)
        return Period(f"d{start:%Y%m%d}", start, end)
    if kind == "weekly":
        start = _add_days(midnight, -midnight.weekday())  # Monday
        end = _add_days(start, 7)
        return Period(f"w{start:%Y%m%d}", start, end)
    if kind == "monthly":
        start = midnight.replace(day=1)
        end = (
            start.replace(year=start.year + 1, month=1)
            if start.month == 12
            else (start.replace(month=start.month + 1))
        )
        return Period(f"m{start:%Y%m}", start, end)
    if kind == "total":
        return Period("total", EPOCH, None)
    raise ValueError(f"unknown budget period {kind!r}")


def _add_days(day: datetime, days: int) -> datetime:
    """Calendar arithmetic in local time (a DST day is 23 or 25 hours long)."""
    naive = day.replace(tzinfo=None) + timedelta(days=days)
    return naive.replace(tzinfo=day.tzinfo)


# Billing months: a tenant's statements run by calendar month in its billing time zone
# (billing.models.TenantTerms.time_zone), whatever GATEWAY_BUDGET_TIMEZONE is.
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])\Z")


def billing_month_of(*, moment: datetime, time_zone: str) -> str:
    """The billing month ("YYYY-MM") an aware moment falls in, in `time_zone`."""
    if moment.tzinfo is None:
        raise ValueError("A billing moment must be timezone-aware.")
    return f"{moment.astimezone(ZoneInfo(time_zone)):%Y-%m}"


def billing_month_bounds(*, month: str, time_zone: str) -> tuple[datetime, datetime]:
    """[start, end) of billing month "YYYY-MM": local midnight on its first day and on the
    next month's, as UTC moments. In UTC, so that `end - start` is the real duration (an
    hour off its days when daylight saving starts or ends in the month): subtracting two
    datetimes of one zone would count wall-clock time."""
    if not _MONTH.match(month):
        raise ValueError(f"A month is written YYYY-MM, not {month!r}.")
    zone = ZoneInfo(time_zone)
    start = datetime.strptime(month, "%Y-%m").replace(tzinfo=zone)
    following = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start.astimezone(UTC), following.astimezone(UTC)
