"""Where a tenant's billing stands: which months are closed, which day is its first open
one, and the lock that keeps roll-ups and closes of one tenant from interleaving.

Shared by the roll-ups (billing.rollups), the close (billing.closing) and the draft
statements (billing.statements)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from django.db import connection
from django.db.models import Max

from billing.models import Statement, TenantTerms
from billing.periods import billing_month_bounds, billing_month_of

# pg_advisory_xact_lock(class, object): the class says whose lock it is, the object which
# tenant's (0: the statement numbering, shared by every tenant).
_LOCK_CLASS = 1313
_NUMBERING = 0


@dataclass(frozen=True)
class BillingState:
    tenant_id: int
    time_zone: str
    # The end of the tenant's last closed month (its latest statement's period_end), None
    # while nothing is closed: ledger lines created before it are billed, or late.
    closed_until: datetime | None

    @property
    def first_open_month(self) -> str | None:
        if self.closed_until is None:
            return None
        return billing_month_of(moment=self.closed_until, time_zone=self.time_zone)

    @property
    def first_open_day(self) -> date | None:
        """The day whose roll-up holds the late lines (usage of closed months not billed
        yet): the first day of the first open month."""
        month = self.first_open_month
        return None if month is None else date.fromisoformat(f"{month}-01")

    def day_is_closed(self, day: date) -> bool:
        first_open = self.first_open_day
        return first_open is not None and day < first_open

    def month_is_closed(self, month: str) -> bool:
        first_open = self.first_open_month
        return first_open is not None and month < first_open


def tenant_time_zone(tenant_id: int) -> str:
    """The tenant's billing time zone; UTC without terms."""
    zone = TenantTerms.objects.filter(tenant_id=tenant_id).values_list("time_zone", flat=True)
    return zone.first() or "UTC"


def billing_state_get(*, tenant_id: int) -> BillingState:
    closed_until = Statement.objects.filter(tenant_id=tenant_id).aggregate(end=Max("period_end"))[
        "end"
    ]
    return BillingState(tenant_id, tenant_time_zone(tenant_id), closed_until)


def day_bounds(*, day: date, time_zone: str) -> tuple[datetime, datetime]:
    """[start, end) of a calendar day in `time_zone`, as UTC moments: 23 or 25 hours apart
    on the days daylight saving starts or ends. A midnight that does not exist (a zone
    that springs forward at 00:00) resolves, as zoneinfo does, to the day's first instant."""
    zone = ZoneInfo(time_zone)
    start = datetime(day.year, day.month, day.day, tzinfo=zone)
    following = day + timedelta(days=1)
    end = datetime(following.year, following.month, following.day, tzinfo=zone)
    return start.astimezone(UTC), end.astimezone(UTC)


def local_day(*, moment: datetime, time_zone: str) -> date:
    return moment.astimezone(ZoneInfo(time_zone)).date()


def month_days(*, month: str, time_zone: str) -> list[date]:
    start, end = billing_month_bounds(month=month, time_zone=time_zone)
    first = local_day(moment=start, time_zone=time_zone)
    last = local_day(moment=end - timedelta(microseconds=1), time_zone=time_zone)
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def next_month(month: str) -> str:
    year, number = int(month[:4]), int(month[5:7])
    return f"{year + 1}-01" if number == 12 else f"{year}-{number + 1:02d}"


def _advisory_lock(object_id: int) -> None:
    if connection.vendor != "postgresql":
        return  # SQLite lets one writer at a time in: its own lock serializes these.
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, object_id % 2_147_483_647]
        )


def lock_tenant_billing(tenant_id: int) -> None:
    """Until the transaction ends: no other roll-up or close of this tenant runs, so a
    roll-up never reads the closed months as they were before a close that then commits
    (it would put billed lines back among the late ones, or miss them)."""
    _advisory_lock(tenant_id + 1)


def lock_statement_numbering() -> None:
    """Until the transaction ends: no other close reads the last number, so numbers have
    no gaps and no twins (a close that rolls back gives its number back)."""
    _advisory_lock(_NUMBERING)
