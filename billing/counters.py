"""Rate limits and budgets on the proxy path: one atomic Redis round trip to admit a
request, one to settle it.

`Governor.admit()` runs `lua/admit.lua`, which checks every rate limit and every budget
that applies to the request and either refuses it whole or counts it everywhere (request
and token counters, budget reservations at the request's worst-case cost). After the
upstream answers (or fails, or the client leaves), `Governor.settle()` runs
`lua/settle.lua`: reservations become real spend and the token counters are corrected to
real usage. Counters live in Redis so every process and replica shares them; the
database ledger (the audit rows) is the record, and a budget counter that is missing
(Redis restarted, a new period) is rebuilt from it before any decision is taken.

Without REDIS_URL (the embedded single-process setup) the same scripts run on an
in-process Redis (fakeredis with Lua), so behaviour is identical.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.db import DatabaseError

from billing.periods import Period, period_for
from billing.rules import BudgetRule, LimitRule
from gateway_project.lib.db import off_loop
from gateway_project.lib.redis_client import async_client, is_unavailable, register_script

logger = logging.getLogger(__name__)

COST_UNITS = Decimal(10) ** 10  # Redis holds cost as an integer of 1e-10 USD
RESERVATIONS_ZSET = "gw:resv:expiry"
_LUA = Path(__file__).resolve().parent / "lua"
_SCRIPTS = {
    name: register_script(f"billing.{name}", _LUA / f"{name}.lua")
    for name in ("admit", "settle", "init_budget", "renew")
}


def cost_to_units(cost: Decimal) -> int:
    return int((cost * COST_UNITS).to_integral_value(rounding="ROUND_CEILING"))


def units_to_cost(units: int) -> Decimal:
    return Decimal(units) / COST_UNITS


def price_to_token_units(price_per_million: Decimal) -> int:
    """A per-million price as an integer per token in 1e-12 USD (exact for the six decimal
    places prices are stored with), which the admission script can multiply exactly."""
    return int((price_per_million * 1_000_000).to_integral_value(rounding="ROUND_CEILING"))


def budget_counter_key(budget_id: int, period: Period) -> str:
    """The Redis hash of one budget's live counters in one period."""
    return f"gw:bud:{budget_id}:{period.key}"


def limit_counter_key(limit: LimitRule) -> str:
    """The Redis hash of one rate limit's per-second request and token counts."""
    return f"gw:rl:{limit.name}"


@dataclass
class Refusal:
    kind: str  # "rate_limit" | "budget"
    detail: str  # "requests" | "tokens" | "cost"
    limit: LimitRule | BudgetRule
    retry_after_ms: int | None = None
    # Budgets: whether nothing at all is left (else only this request's worst case does
    # not fit), and how many output tokens would still fit beside its prompt.
    exhausted: bool = True
    fitting_output_tokens: int = 0


@dataclass(frozen=True)
class OutputReserve:
    """The output part of a reservation, so that admission can lower it to what the hard
    budgets still afford (when the gateway, not the client, chose the cap)."""

    tokens: int  # included in the reservation's tokens
    price_per_million: Decimal
    prompt_cost: Decimal  # the rest of the reservation's cost
    min_tokens: int | None = None  # None: the client set the cap; never lower it


@dataclass
class Admission:
    request_id: str
    limits: list[LimitRule]
    budgets: list[tuple[BudgetRule, Period]]
    estimated_tokens: int
    reserved_tokens: int = 0
    reserved_cost: Decimal = Decimal(0)
    output_tokens: int | None = None  # the output reserved, when admission was told it
    expires_at_ms: int = 0  # when an unsettled reservation stops counting (a dead process)
    second: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False
    degraded: bool = False  # admitted without Redis (fail-open)


class GovernanceUnavailable(Exception):
    """Redis could not be reached; the caller applies the configured failure policy."""


class Governor:
    # --- Redis plumbing ----------------------------------------------------------------------
    def _client(self) -> Any:
        return async_client()

    async def _run(self, name: str, keys: list[str], args: list) -> list:
        try:
            return await _SCRIPTS[name](keys=keys, args=args)
        except Exception as exc:
            if is_unavailable(exc):
                raise GovernanceUnavailable(str(exc)) from exc
            raise

    # --- admission -----------------------------------------------------------------------
    async def admit(
        self,
        *,
        request_id: str,
        limits: list[LimitRule],
        budgets: list[BudgetRule],
        estimated_tokens: int,
        reserve_tokens: int,
        reserve_cost: Decimal,
        hold_seconds: float,
        output: OutputReserve | None = None,
        now: datetime | None = None,
    ) -> Admission | Refusal:
        """Count the request against every limit and reserve its worst case on every budget,
        or refuse it without counting anything.

        The reservation is released by the next admission anywhere once `hold_seconds`
        have passed without a settlement (the request's process died): the caller passes
        the longest the request can run, plus a margin. With `output`, a worst case that
        does not fit a hard budget is lowered to the output that does (at least
        `output.min_tokens`); `Admission.output_tokens` says what was reserved.
        """
        now = now or datetime.now(UTC)  # (django's timezone.now() costs a settings lookup)
        periods = [(budget, period_for(budget.period, now)) for budget in budgets]
        admission = Admission(
            request_id=request_id,
            limits=limits,
            budgets=periods,
            estimated_tokens=estimated_tokens,
            reserved_tokens=reserve_tokens,
            reserved_cost=reserve_cost,
        )
        if not limits and not budgets:
            return admission
        now_ms = int(now.timestamp() * 1000)
        admission.expires_at_ms = now_ms + math.ceil(hold_seconds * 1000)
        keys = [f"gw:resv:{request_id}", RESERVATIONS_ZSET]
        keys += [limit_counter_key(limit) for limit in limits]
        keys += [budget_counter_key(budget.id, period) for budget, period in periods]
        args = _admit_args(admission, now_ms=now_ms, output=output)
        for _attempt in range(3):
            result = await self._run("admit", keys, args)
            if _text(result[0]) == "missing":
                await self._rebuild([periods[int(i) - 1] for i in result[1:]])
                continue
            return _admit_outcome(admission, result, output=output)
        raise GovernanceUnavailable("budget counters could not be rebuilt")

    async def _rebuild(self, missing: list[tuple[BudgetRule, Period]]) -> None:
        from billing.selectors import budget_spend_in_period

        for budget, period in missing:
            # On the thread that does the proxy's other reads (keys, snapshots), whose
            # connection is kept (CONN_MAX_AGE): after a Redis restart every budget in use
            # is rebuilt at once, and a new connection per rebuild (a Postgres backend
            # each) was most of that burst's cost.
            try:
                tokens, cost = await off_loop(
                    functools.partial(
                        budget_spend_in_period,
                        scope=budget.scope,
                        subject_id=budget.subject_id,
                        start=period.start,
                        end=period.end,
                    )
                )
            except DatabaseError as exc:
                # Redis lost the counter while the ledger is away too: nothing to check the
                # budget against, which is the same failure as Redis being away (the
                # failure policy answers it), never a 500.
                raise GovernanceUnavailable(f"the ledger cannot be read: {exc}") from exc
            expire_at = (
                int(period.end.timestamp()) + 86_400 if period.end else int(time.time()) + 10**9
            )
            await self._run(
                "init_budget",
                [budget_counter_key(budget.id, period)],
                [tokens, cost_to_units(cost), expire_at],
            )
            logger.info("budget %s rebuilt from the ledger for %s", budget.id, period.key)

    # --- settlement --------------------------------------------------------------------------
    async def settle(
        self, admission: Admission, *, tokens: int, cost: Decimal, prompt_tokens: int | None = None
    ) -> list[tuple[BudgetRule, int, Decimal]]:
        """Replace the reservation with what was consumed (zero for a failed request).

        Returns each budget's spend after settling, for threshold alerts. Idempotent: a
        second call for the same admission does nothing.
        """
        if admission.settled or admission.degraded:
            return []
        admission.settled = True
        if not admission.limits and not admission.budgets:
            return []
        keys = [f"gw:resv:{admission.request_id}", RESERVATIONS_ZSET]
        keys += [budget_counter_key(budget.id, period) for budget, period in admission.budgets]
        keys += [limit_counter_key(limit) for limit in admission.limits]
        correction = tokens - admission.estimated_tokens
        over_tokens = max(tokens - admission.reserved_tokens, 0) if admission.budgets else 0
        over_cost = max(cost - admission.reserved_cost, Decimal(0)) if admission.budgets else 0
        if over_tokens or over_cost:
            # The reservation did not cover what the upstream billed: counted on each
            # budget (the admin shows it), and said here for whoever reads the logs.
            logger.warning(
                "request %s spent %s tokens / $%s, past its reservation of %s / $%s (budgets %s)",
                admission.request_id,
                tokens,
                cost,
                admission.reserved_tokens,
                admission.reserved_cost,
                ", ".join(str(budget.id) for budget, _period in admission.budgets),
            )
        result = await self._run(
            "settle",
            keys,
            [
                admission.request_id,
                len(admission.budgets),
                len(admission.limits),
                tokens,
                cost_to_units(cost),
                admission.second,
                correction,
                over_tokens,
                cost_to_units(Decimal(over_cost)),
            ],
        )
        spent = []
        for index, (budget, _period) in enumerate(admission.budgets):
            tokens_after, cost_after = int(result[2 * index]), int(result[2 * index + 1])
            if tokens_after >= 0:
                spent.append((budget, tokens_after, units_to_cost(cost_after)))
        return spent

    async def renew(self, admission: Admission, *, hold_seconds: float) -> bool:
        """Keep a running request's reservation for `hold_seconds` more (a long stream);
        False when it is no longer held (settled, or swept after its process died)."""
        if admission.settled or admission.degraded or not admission.budgets:
            return False
        expires_at_ms = int(time.time() * 1000) + math.ceil(hold_seconds * 1000)
        held = await self._run("renew", [RESERVATIONS_ZSET], [admission.request_id, expires_at_ms])
        admission.expires_at_ms = max(admission.expires_at_ms, expires_at_ms)
        return bool(held)


def _admit_args(admission: Admission, *, now_ms: int, output: OutputReserve | None) -> list:
    """ARGV of lua/admit.lua: the request, then each limit, then each budget."""
    args: list = [
        now_ms,
        admission.request_id,
        admission.expires_at_ms,
        len(admission.limits),
        len(admission.budgets),
        admission.estimated_tokens,
        _or_none(output.min_tokens if output is not None else None),
        output.tokens if output is not None else 0,
        price_to_token_units(output.price_per_million) if output is not None else 0,
        cost_to_units(output.prompt_cost) if output is not None else 0,
    ]
    for limit in admission.limits:
        args += [_or_none(limit.rpm), _or_none(limit.tpm)]
    reserve_units = cost_to_units(admission.reserved_cost)
    for budget, _period in admission.budgets:
        args += [
            _or_none(budget.max_tokens),
            _or_none(cost_to_units(budget.max_cost) if budget.max_cost is not None else None),
            1 if budget.hard else 0,
            admission.reserved_tokens,
            reserve_units,
        ]
    return args


def _admit_outcome(
    admission: Admission, result: list, *, output: OutputReserve | None
) -> Admission | Refusal:
    """What lua/admit.lua answered: a refusal naming the rule, or the admission filled in."""
    status = _text(result[0])
    if status == "rate_limited":
        limit = admission.limits[int(result[1]) - 1]
        retry = int(result[4])
        return Refusal("rate_limit", _text(result[2]), limit, None if retry < 0 else retry)
    if status == "budget":
        budget, _period = admission.budgets[int(result[1]) - 1]
        return Refusal(
            "budget",
            _text(result[2]),
            budget,
            exhausted=int(result[3]) == 1,
            fitting_output_tokens=int(result[4]),
        )
    periods = admission.budgets
    admission.second = int(result[1])
    if periods:
        admission.reserved_tokens = int(result[3])
        admission.reserved_cost = units_to_cost(int(result[4]))
    if output is not None:
        admission.output_tokens = int(result[2]) if periods else output.tokens
    admission.headers = _rate_headers(admission.limits, result[5:])
    return admission


def _or_none(value: int | None) -> int:
    return -1 if value is None else int(value)


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _rate_headers(limits: list[LimitRule], flat: list) -> dict[str, str]:
    """OpenAI-style x-ratelimit-* headers for the tightest request and token limits."""
    headers: dict[str, str] = {}
    best_req: tuple[int, int, int] | None = None  # (remaining, limit, reset_ms)
    best_tok: tuple[int, int, int] | None = None
    for index, limit in enumerate(limits):
        rem_r, rem_t, reset_r, reset_t = (int(x) for x in flat[4 * index : 4 * index + 4])
        if limit.rpm is not None and (best_req is None or rem_r < best_req[0]):
            best_req = (rem_r, limit.rpm, reset_r)
        if limit.tpm is not None and (best_tok is None or rem_t < best_tok[0]):
            best_tok = (rem_t, limit.tpm, reset_t)
    if best_req:
        headers["x-ratelimit-limit-requests"] = str(best_req[1])
        headers["x-ratelimit-remaining-requests"] = str(max(best_req[0], 0))
        headers["x-ratelimit-reset-requests"] = _duration(best_req[2])
    if best_tok:
        headers["x-ratelimit-limit-tokens"] = str(best_tok[1])
        headers["x-ratelimit-remaining-tokens"] = str(max(best_tok[0], 0))
        headers["x-ratelimit-reset-tokens"] = _duration(best_tok[2])
    return headers


def _duration(ms: int) -> str:
    """OpenAI's reset format: "1s", "6m0s", "250ms"."""
    if ms <= 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    seconds = ms / 1000
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes)}m{seconds:.0f}s" if minutes else f"{seconds:.0f}s"


governor = Governor()
