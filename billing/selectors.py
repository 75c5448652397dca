"""Reads for budgets and rate limits (admin, commands; the proxy reads the snapshot)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal

from asgiref.sync import async_to_sync
from django.db.models import QuerySet, Sum
from django.utils import timezone

from billing.counters import budget_counter_key, units_to_cost
from billing.models import Budget, RateLimit, Scope, UsageLine
from billing.periods import Period, period_for
from billing.rules import BudgetRule
from gateway_project.lib.money_sum import money_sum, money_value
from gateway_project.lib.redis_client import async_client, is_unavailable


def budget_list() -> QuerySet[Budget]:
    return Budget.objects.select_related("tenant", "api_key", "route__tenant").order_by("id")


def rate_limit_list() -> QuerySet[RateLimit]:
    return RateLimit.objects.select_related("tenant", "route__tenant").order_by("id")


def budget_spend_in_period(
    *, scope: str, subject_id: int, start: datetime, end: datetime | None
) -> tuple[int, Decimal]:
    """Tokens and cost the usage ledger (billing.models.UsageLine) holds for one budget
    subject and period.

    This is the record a budget counter is rebuilt from: the ledger, not the audit log,
    whose rows retention deletes. Only billable requests have lines, and a refused or
    failed request costs nothing, so the sums are the audit log's. Rows are attributed to
    the period in which their request started.
    """
    field = {"tenant": "tenant_id", "key": "api_key_id", "route": "route_id"}[scope]
    rows = UsageLine.objects.filter(**{field: subject_id}, created_at__gte=start)
    if end is not None:
        rows = rows.filter(created_at__lt=end)
    totals = rows.aggregate(tokens=Sum("total_tokens"), cost=money_sum("cost_usd"))
    return int(totals["tokens"] or 0), money_value(totals["cost"])


@dataclass(frozen=True)
class BudgetStatus:
    """Where a budget stands in its current period, according to the ledger.

    `remaining_*` and the limit they come from are None when the budget sets no such
    limit; `percent_used` is the larger of the token and cost shares (rounded down to a
    tenth, so 100 means really exhausted). `period_end` is None for a total budget.
    """

    period_key: str
    period_start: datetime
    period_end: datetime | None
    spent_tokens: int
    spent_cost: Decimal
    remaining_tokens: int | None
    remaining_cost: Decimal | None
    percent_used: Decimal | None


def _percent(spent: Decimal, limit: Decimal) -> Decimal:
    if limit <= 0:
        return Decimal(100)
    return (spent * 100 / limit).quantize(Decimal("0.1"), rounding=ROUND_DOWN)


def budget_status(*, budget: Budget, now: datetime | None = None) -> BudgetStatus:
    """The budget's spend so far in the period containing `now` (default: now).

    One aggregate query on the usage ledger, the same figures a missing Redis counter is
    rebuilt from. It does not see reservations of requests still in flight, nor rows the
    audit writer has not flushed yet (a fraction of a second), so it can trail the live
    counter the proxy enforces by that much.
    """
    period = period_for(budget.period, now or timezone.now())
    subject = _subject_id(budget)
    if subject is None:  # not a valid budget (clean() refuses it); nothing to sum
        tokens, cost = 0, Decimal(0)
    else:
        tokens, cost = budget_spend_in_period(
            scope=budget.scope, subject_id=subject, start=period.start, end=period.end
        )
    shares = []
    remaining_tokens = remaining_cost = None
    if budget.max_tokens is not None:
        remaining_tokens = max(budget.max_tokens - tokens, 0)
        shares.append(_percent(Decimal(tokens), Decimal(budget.max_tokens)))
    if budget.max_cost_usd is not None:
        remaining_cost = max(budget.max_cost_usd - cost, Decimal(0))
        shares.append(_percent(cost, budget.max_cost_usd))
    return BudgetStatus(
        period_key=period.key,
        period_start=period.start,
        period_end=period.end,
        spent_tokens=tokens,
        spent_cost=cost,
        remaining_tokens=remaining_tokens,
        remaining_cost=remaining_cost,
        percent_used=max(shares) if shares else None,
    )


@dataclass(frozen=True)
class BudgetOverruns:
    """Requests of the current period that spent more than their reservation held, and
    by how much in all. Each one let the budget's spend run ahead of what admission
    allowed for (an upstream billing more than it was reserved for, say); a hard budget
    can end that much over its limit."""

    requests: int
    tokens: int
    cost: Decimal


async def _overrun_fields(key: str) -> list:
    return await async_client().hmget(key, "ov", "ovt", "ovc")


def budget_overruns(*, budget: Budget, now: datetime | None = None) -> BudgetOverruns | None:
    """The overruns the proxy's settlements counted on the budget's live counter in the
    period containing `now`; None when Redis cannot be reached. They go when the counter
    does (Redis flushed, a new period); each one was also logged by the worker."""
    period = period_for(budget.period, now or timezone.now())
    try:
        requests, tokens, cost = async_to_sync(_overrun_fields)(
            budget_counter_key(budget.id, period)
        )
    except Exception as exc:
        if is_unavailable(exc):
            return None
        raise
    return BudgetOverruns(
        requests=int(requests or 0), tokens=int(tokens or 0), cost=units_to_cost(int(cost or 0))
    )


@dataclass(frozen=True)
class BudgetStanding:
    """A budget's live counter in its current period (what admission decides by): spent
    so far and what is left of each limit it sets (None: no such limit)."""

    budget: BudgetRule
    period_key: str
    spent_tokens: int
    spent_cost: Decimal
    remaining_tokens: int | None
    remaining_cost: Decimal | None


async def budget_standings(
    *, budgets: Iterable[BudgetRule], now: datetime | None = None
) -> list[BudgetStanding]:
    """The live counters of `budgets`, in one round trip to Redis (a pipeline, not a
    script: nothing waits behind it). A budget whose counter is not there (not used in
    this period yet, or Redis lost it) is left out: its spend would take a ledger sum,
    which is the proxy's job when it next needs it. Raises what Redis raises."""
    now = now or timezone.now()
    wanted = [(budget, period_for(budget.period, now)) for budget in budgets]
    if not wanted:
        return []
    pipe = async_client().pipeline(transaction=False)
    for budget, period in wanted:
        pipe.hmget(budget_counter_key(budget.id, period), "st", "sc")
    replies = await pipe.execute()
    standings = []
    for (budget, period), (tokens, units) in zip(wanted, replies, strict=True):
        if tokens is None and units is None:
            continue
        spent_tokens, spent_cost = int(tokens or 0), units_to_cost(int(units or 0))
        standings.append(
            BudgetStanding(
                budget=budget,
                period_key=period.key,
                spent_tokens=spent_tokens,
                spent_cost=spent_cost,
                remaining_tokens=None
                if budget.max_tokens is None
                else max(budget.max_tokens - spent_tokens, 0),
                remaining_cost=None
                if budget.max_cost is None
                else max(budget.max_cost - spent_cost, Decimal(0)),
            )
        )
    return standings


@dataclass(frozen=True)
class BudgetUsage:
    """Where one budget stands in its current period (the dashboard's "near the limit").

    `live`: read from the budget's Redis counter, the figure admission enforces; else
    from the ledger (no counter yet this period, or Redis unreachable)."""

    budget: Budget
    spent_tokens: int
    spent_cost: Decimal
    percent_used: Decimal | None
    live: bool


async def _counters(keys: list[str]) -> list[list]:
    client = async_client()
    async with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, "st", "sc")
        return await pipe.execute()


def _live_counters(keys: list[str]) -> list[tuple[int, Decimal] | None] | None:
    """Spent tokens and cost per budget counter (None: no counter), in one round trip;
    None when Redis cannot be reached."""
    if not keys:
        return []
    try:
        replies = async_to_sync(_counters)(keys)
    except Exception as exc:
        if is_unavailable(exc):
            return None
        raise
    return [
        None if tokens is None or cost is None else (int(tokens), units_to_cost(int(cost)))
        for tokens, cost in replies
    ]


def budget_usage_list(
    *, at_least: Decimal = Decimal(0), limit: int | None = None, now: datetime | None = None
) -> list[BudgetUsage]:
    """Every enabled budget used at least `at_least` percent, most used first.

    The live counters of all of them are read in one Redis round trip. The budgets without
    one (nothing spent through them since Redis started, this period), or all of them when
    Redis is away, are summed from the ledger, as their counters would be rebuilt: one
    grouped query per scope and period, however many budgets."""
    now = now or timezone.now()
    budgets = list(budget_list().filter(enabled=True))
    periods = [period_for(budget.period, now) for budget in budgets]
    counters = _live_counters(
        [budget_counter_key(b.id, p) for b, p in zip(budgets, periods, strict=True)]
    )
    live = {
        budget.id: counter
        for budget, counter in zip(budgets, counters or [None] * len(budgets), strict=True)
        if counter is not None
    }
    ledger = _ledger_spends(
        [(b, p) for b, p in zip(budgets, periods, strict=True) if b.id not in live]
    )
    found = []
    for budget in budgets:
        tokens, cost = live.get(budget.id) or ledger.get(budget.id, (0, Decimal(0)))
        shares = []
        if budget.max_tokens is not None:
            shares.append(_percent(Decimal(tokens), Decimal(budget.max_tokens)))
        if budget.max_cost_usd is not None:
            shares.append(_percent(cost, budget.max_cost_usd))
        percent = max(shares) if shares else None
        if percent is not None and percent >= at_least:
            found.append(BudgetUsage(budget, tokens, cost, percent, live=budget.id in live))
    found.sort(key=lambda usage: (-(usage.percent_used or 0), usage.budget.id))
    return found if limit is None else found[:limit]


_SUBJECT_FIELDS = {"tenant": "tenant_id", "key": "api_key_id", "route": "route_id"}


def _subject_id(budget: Budget) -> int | None:
    return {"tenant": budget.tenant_id, "key": budget.api_key_id, "route": budget.route_id}.get(
        budget.scope
    )


def _ledger_spends(budgets: list[tuple[Budget, Period]]) -> dict[int, tuple[int, Decimal]]:
    """Budget id -> the ledger's tokens and cost in its period, a query per scope and
    period (budget_spend_in_period's sums, grouped by subject)."""
    groups: dict[tuple[str, datetime, datetime | None], list[Budget]] = {}
    for budget, period in budgets:
        if _subject_id(budget) is not None:  # else not a valid budget: nothing to sum
            groups.setdefault((budget.scope, period.start, period.end), []).append(budget)
    spends: dict[int, tuple[int, Decimal]] = {}
    for (scope, start, end), members in groups.items():
        field = _SUBJECT_FIELDS[scope]
        rows = UsageLine.objects.filter(
            **{f"{field}__in": {_subject_id(b) for b in members}}, created_at__gte=start
        )
        if end is not None:
            rows = rows.filter(created_at__lt=end)
        sums = {
            values[field]: (int(values["tokens"] or 0), money_value(values["cost"]))
            for values in rows.values(field)
            .annotate(tokens=Sum("total_tokens"), cost=money_sum("cost_usd"))
            .order_by()
        }
        for budget in members:
            spends[budget.id] = sums.get(_subject_id(budget), (0, Decimal(0)))
    return spends


def api_key_ids_with_limits() -> set[int]:
    """The keys that have a budget or a rate limit of their own (the importer's prune)."""
    limited = RateLimit.objects.filter(scope=Scope.KEY).values_list("api_key_id", flat=True)
    budgeted = Budget.objects.filter(scope=Scope.KEY).values_list("api_key_id", flat=True)
    return {*limited, *budgeted}
