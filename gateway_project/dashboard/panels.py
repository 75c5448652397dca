"""The admin dashboard's panels: what each shows, who may see it, and how it is read.

Each panel is shown only to a user holding the permission that opens its data in the
admin (PANELS): Ops see traffic, budgets and circuits, Finance spend and budgets,
superusers all. A panel's figures are the same for everyone allowed to see it, so they are
kept in the cache for DASHBOARD_CACHE_SECONDS (0: never), which bounds what a page
reload costs whatever the traffic; the page says when its figures were taken.

Every read is bounded: traffic by `created_at` over the last 24 hours (audit/traffic.py),
spend from the daily roll-ups of this month (billing.reports, as the Usage & billing page),
budgets from their live Redis counters in one round trip (billing.selectors), circuits
from Redis in one call (providers.circuit). Redis being away makes a panel say so, never
the page fail.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from audit.traffic import HourCount, TenantTraffic, TrafficWindow, traffic_summary
from billing.reports import ReportQuery, ReportRow, usage_report
from billing.selectors import BudgetUsage, budget_usage_list
from billing.usage_chart import UsageChart, usage_chart
from gateway_project.dashboard.charts import TrafficChart, traffic_chart
from providers.circuit import CLOSED, BreakerUnavailable, CircuitState, circuit_states, target_key
from providers.selectors import provider_models_by_name

logger = logging.getLogger(__name__)

TOP_TENANTS = 5
BUDGETS_SHOWN = 10
_CACHE_KEY = "admin-dashboard:{name}:v1"


@dataclass(frozen=True)
class TrafficPanel:
    last_hour: TrafficWindow
    last_day: TrafficWindow
    hours: list[HourCount]
    chart: TrafficChart | None
    top_tenants: list[TenantTraffic]
    taken_at: datetime


@dataclass(frozen=True)
class SpendPanel:
    today: Decimal
    month: Decimal
    month_label: str  # "2027-03"
    top_tenants: list[ReportRow]
    chart: UsageChart | None
    rolled_up_at: datetime | None  # the roll-ups' age: spend lags the traffic by that much
    taken_at: datetime


@dataclass(frozen=True)
class BudgetsPanel:
    at_least: Decimal
    rows: list[BudgetUsage]
    taken_at: datetime


@dataclass(frozen=True)
class CircuitsPanel:
    targets: int  # how many provider targets there are
    not_closed: list[CircuitState]  # open or half-open, open first
    unavailable: bool  # Redis could not be reached: states unknown
    taken_at: datetime


def traffic_panel(now: datetime) -> TrafficPanel:
    summary = traffic_summary(end=now, top=TOP_TENANTS)
    return TrafficPanel(
        last_hour=summary.last_hour,
        last_day=summary.last_day,
        hours=summary.hours,
        chart=traffic_chart(summary.hours),
        top_tenants=summary.top_tenants,
        taken_at=now,
    )


def spend_panel(now: datetime) -> SpendPanel:
    # Billing days are each tenant's own calendar days (DailyUsage.day); "today" is the
    # day of that date in them, as on the Usage & billing page.
    today: date = now.date()
    month = f"{today:%Y-%m}"
    report = usage_report(ReportQuery(month=month, group_by="tenant"))
    spent_today = sum((point.cost for point in report.series if point.day == today), Decimal(0))
    return SpendPanel(
        today=spent_today,
        month=report.total.cost,
        month_label=month,
        top_tenants=report.rows[:TOP_TENANTS],
        # Nothing spent this month yet: no chart of zeros.
        chart=usage_chart([point for point in report.series if point.day <= today])
        if report.total.requests
        else None,
        rolled_up_at=report.as_of,
        taken_at=now,
    )


def budgets_panel(now: datetime) -> BudgetsPanel:
    at_least = Decimal(settings.DASHBOARD_BUDGET_WARN_PERCENT)
    rows = budget_usage_list(at_least=at_least, limit=BUDGETS_SHOWN, now=now)
    return BudgetsPanel(at_least=at_least, rows=rows, taken_at=now)


def circuits_panel(now: datetime) -> CircuitsPanel:
    keys = sorted(
        target_key(model.provider.name, model.name) for model in provider_models_by_name().values()
    )
    try:
        states = circuit_states(keys=keys) if keys else []
    except BreakerUnavailable:
        return CircuitsPanel(len(keys), [], unavailable=True, taken_at=now)
    not_closed = sorted(
        (state for state in states if state.state != CLOSED),
        key=lambda state: (state.state != "open", state.key),
    )
    return CircuitsPanel(len(keys), not_closed, unavailable=False, taken_at=now)


@dataclass(frozen=True)
class PanelSpec:
    name: str
    permission: str  # the admin permission that already opens this data
    build: Callable[[datetime], Any]


PANELS = (
    PanelSpec("traffic", "audit.view_auditevent", traffic_panel),
    PanelSpec("spend", "billing.view_dailyusage", spend_panel),
    PanelSpec("budgets", "billing.view_budget", budgets_panel),
    PanelSpec("circuits", "providers.view_provider", circuits_panel),
)


def _cached(spec: PanelSpec, now: datetime) -> Any:
    seconds = settings.DASHBOARD_CACHE_SECONDS
    if seconds <= 0:
        return spec.build(now)
    key = _CACHE_KEY.format(name=spec.name)
    try:
        found = cache.get(key)
    except Exception:  # a cache in Redis may be away: compute instead, never fail the page
        logger.warning("dashboard: cache unreadable, computing %s", spec.name, exc_info=True)
        return spec.build(now)
    if found is not None:
        return found
    panel = spec.build(now)
    try:
        cache.set(key, panel, seconds)
    except Exception:
        logger.warning("dashboard: cache unwritable for %s", spec.name, exc_info=True)
    return panel


def dashboard_for(user: Any, *, now: datetime | None = None) -> dict[str, Any]:
    """The panels `user` may see by name, each built (or taken from the cache) once."""
    now = now or timezone.now()
    return {spec.name: _cached(spec, now) for spec in PANELS if user.has_perm(spec.permission)}
