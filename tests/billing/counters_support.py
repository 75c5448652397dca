"""Helpers of the governance counter tests: rules, admissions and reading the counters."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from billing.counters import (
    Admission,
    Governor,
    OutputReserve,
    Refusal,
    budget_counter_key,
    limit_counter_key,
)
from billing.periods import period_for
from billing.rules import BudgetRule, LimitRule

ROME = ZoneInfo("Europe/Rome")
# A whole second, a day ahead: keys that Redis expires by its own clock (periods end,
# reservations lapse) must not be born dead, whenever the suite runs.
T0 = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
budget_db = pytest.mark.django_db(transaction=True)
HOLD = timedelta(seconds=90)  # how long a reservation outlives its request's admission


def limit(name: str = "key:1", *, rpm: int | None = None, tpm: int | None = None) -> LimitRule:
    return LimitRule(name, rpm, tpm)


def budget(
    *,
    id: int = 1,
    scope: str = "tenant",
    subject_id: int = 1,
    period: str = "total",
    hard: bool = True,
    max_tokens: int | None = None,
    max_cost: str | None = None,
) -> BudgetRule:
    return BudgetRule(
        id=id,
        scope=scope,
        subject_id=subject_id,
        period=period,
        hard=hard,
        max_tokens=max_tokens,
        max_cost=Decimal(max_cost) if max_cost is not None else None,
    )


async def admit(
    gov: Governor,
    *,
    limits: Iterable[LimitRule] = (),
    budgets: Iterable[BudgetRule] = (),
    est: int = 0,
    tokens: int = 1,
    cost: str = "0.0000000001",
    now: datetime | None = T0,
    hold: float = HOLD.total_seconds(),
    output: OutputReserve | None = None,
) -> Admission | Refusal:
    """Reserves a token and 1e-10 USD unless told otherwise: a reservation of zero is a case
    of its own (see the zero-reservation tests)."""
    return await gov.admit(
        request_id=f"req_{uuid.uuid4().hex}",
        limits=list(limits),
        budgets=list(budgets),
        estimated_tokens=est,
        reserve_tokens=tokens,
        reserve_cost=Decimal(cost),
        hold_seconds=hold,
        output=output,
        now=now,
    )


async def admitted(gov: Governor, **kwargs: object) -> Admission:
    result = await admit(gov, **kwargs)
    assert isinstance(result, Admission), result
    return result


async def refused(gov: Governor, **kwargs: object) -> Refusal:
    result = await admit(gov, **kwargs)
    assert isinstance(result, Refusal), result
    return result


async def state(gov: Governor, spec: BudgetRule, now: datetime = T0) -> dict[str, int]:
    """The budget's Redis hash: st/sc spent and rt/rc reserved (cost in 1e-10 USD)."""
    raw = await gov._client().hgetall(budget_counter_key(spec.id, period_for(spec.period, now)))
    return {key.decode(): int(value) for key, value in raw.items()}


async def window(gov: Governor, spec: LimitRule) -> tuple[int, int]:
    """Requests and tokens a rate limit's hash holds."""
    raw = await gov._client().hgetall(limit_counter_key(spec))
    buckets = {k: int(v) for k, v in raw.items() if k[1:].isdigit() and int(k[1:]) > 0}
    requests = sum(v for k, v in buckets.items() if k.startswith(b"r"))
    tokens = sum(v for k, v in buckets.items() if k.startswith(b"t"))
    return requests, tokens
