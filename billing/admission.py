"""The proxy's admission step: one atomic admission, then settlement, and the refusals.

`routing/proxy/admission.py` checks the request's policy (`tenants/policy.py`), then
calls `admit()` (one Redis round trip for every rate limit and budget); `settle()` runs
once the request is over, however it ended, and queues the budget alerts it crossed.
Refusals are raised as `GatewayError`s in the contract's envelope with the contract's
headers. The counting itself is `billing/counters.py`.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
from dataclasses import dataclass, field
from decimal import Decimal

from django.conf import settings

from billing.counters import (
    Admission,
    GovernanceUnavailable,
    OutputReserve,
    Refusal,
    governor,
)
from billing.rules import BudgetRule, LimitRule
from gateway_project.lib.errors import GatewayError

logger = logging.getLogger(__name__)
MILLION = Decimal(1_000_000)


@dataclass
class Guard:
    """What governance holds for one request until it is settled."""

    prompt_tokens: int  # our tokenizer's count (policies, TPM, calibration)
    output_cap: int | None  # the most output this request may produce, all its choices
    # together (None: unbounded)
    injected_cap: int | None = None  # sent upstream when the client set no cap itself
    admission: Admission | None = None
    headers: dict[str, str] = field(default_factory=dict)
    counted_with: str = ""  # the provider kind whose tokenizer counted prompt_tokens
    choices: int = 1  # `n`: every choice may produce up to the cap

    def apply_admitted_output(self) -> None:
        """Send upstream the output cap admission granted, when it lowered ours to what
        the budget still affords (only ever a cap the gateway chose, never the client's)."""
        admission = self.admission
        if admission is None or admission.output_tokens is None or self.injected_cap is None:
            return
        per_choice = admission.output_tokens // self.choices
        if per_choice < self.injected_cap:
            self.injected_cap = per_choice
            self.output_cap = per_choice * self.choices
            admission.headers["x-gateway-max-tokens"] = str(per_choice)

    @property
    def holds_hard_budget(self) -> bool:
        return self.admission is not None and any(b.hard for b, _ in self.admission.budgets)


async def admit(
    *,
    request_id: str,
    limits: list[LimitRule],
    budgets: list[BudgetRule],
    prompt_tokens: int,
    tpm_output_tokens: int,
    reserve_output_tokens: int,
    max_input_price: Decimal,
    max_output_price: Decimal,
    deadline_seconds: float,
    reserve_prompt_tokens: int | None = None,
    output_is_ours: bool = False,
    choices: int = 1,
) -> Admission | None:
    """Count the request everywhere or raise the contract's 429 (or 503 when Redis is away
    and the failure policy says closed).

    `deadline_seconds` is the longest the request can run before it settles: its
    reservation outlives it by GATEWAY_RESERVATION_MARGIN_SECONDS, not more, should its
    process die. `reserve_prompt_tokens` is the prompt as budgets must hold it (our count
    calibrated to what the upstream bills; default `prompt_tokens`). With
    `output_is_ours` (the client set no cap), a worst case that does not fit a hard
    budget is lowered to the output that does, down to GATEWAY_BUDGET_MIN_OUTPUT_TOKENS
    for each of the request's `choices`.
    """
    if not settings.GATEWAY_GOVERNANCE_ENABLED or (not limits and not budgets):
        return None
    reserve_prompt = prompt_tokens if reserve_prompt_tokens is None else reserve_prompt_tokens
    prompt_cost = Decimal(reserve_prompt) * max_input_price / MILLION
    reserve_cost = prompt_cost + Decimal(reserve_output_tokens) * max_output_price / MILLION
    output = OutputReserve(
        tokens=reserve_output_tokens,
        price_per_million=max_output_price,
        prompt_cost=prompt_cost,
        min_tokens=settings.GATEWAY_BUDGET_MIN_OUTPUT_TOKENS * choices if output_is_ours else None,
    )
    try:
        result = await governor.admit(
            request_id=request_id,
            limits=limits,
            budgets=budgets,
            estimated_tokens=prompt_tokens + tpm_output_tokens,
            reserve_tokens=reserve_prompt + reserve_output_tokens,
            reserve_cost=reserve_cost,
            hold_seconds=deadline_seconds + settings.GATEWAY_RESERVATION_MARGIN_SECONDS,
            output=output,
        )
    except GovernanceUnavailable as exc:
        return _without_redis(exc, request_id=request_id, limits=limits, budgets=budgets)
    if isinstance(result, Refusal):
        raise _refusal_error(
            result,
            output_tokens=reserve_output_tokens,
            output_is_ours=output_is_ours,
        )
    return result


def _without_redis(
    exc: GovernanceUnavailable,
    *,
    request_id: str,
    limits: list[LimitRule],
    budgets: list[BudgetRule],
) -> Admission:
    """The failure policy: refuse (503) when what applies fails closed, else admit degraded."""
    closed = (budgets and settings.GATEWAY_BUDGET_FAILURE_MODE == "closed") or (
        limits and settings.GATEWAY_RATE_LIMIT_FAILURE_MODE == "closed"
    )
    if closed:
        logger.error("governance unavailable, refusing (fail closed): %s", exc)
        raise GatewayError(
            503,
            "Rate limits and budgets cannot be checked right now; try again shortly.",
            type="api_error",
            code="governance_unavailable",
            headers={"retry-after": "1", "retry-after-ms": "1000"},
            outcome="rejected",
        ) from exc
    logger.warning("governance unavailable, serving without it (fail open): %s", exc)
    return Admission(
        request_id=request_id, limits=[], budgets=[], estimated_tokens=0, degraded=True
    )


def _budget_refusal_message(
    refusal: Refusal, budget: BudgetRule, *, output_tokens: int, output_is_ours: bool
) -> str:
    """Why a hard budget refused: nothing left, or only this request's worst case too big
    (and then what to do about it)."""
    which = f"the {budget.period} {refusal.detail} budget of this {budget.scope}"
    if refusal.exhausted:
        return f"{which[0].upper()}{which[1:]} is exhausted."
    fits = refusal.fitting_output_tokens
    # A route's budget may be shared by tenants: how much of it is left is not theirs to see.
    hint = f" At most {fits} output tokens fit now." if fits > 0 and budget.scope != "route" else ""
    if fits <= 0:
        return (
            f"This request's prompt alone costs more than what remains of {which}; "
            "shorten it or wait for the budget's next period."
        )
    if output_is_ours:
        minimum = settings.GATEWAY_BUDGET_MIN_OUTPUT_TOKENS
        return (
            f"What remains of {which} affords fewer than {minimum} output tokens beside "
            f"this request's prompt, the least the gateway lowers max_tokens to.{hint}"
        )
    return (
        f"This request's worst case (its prompt plus max_tokens={output_tokens}) costs more "
        f"than what remains of {which}; set a lower max_tokens.{hint}"
    )


def _refusal_error(
    refusal: Refusal, *, output_tokens: int = 0, output_is_ours: bool = False
) -> GatewayError:
    if refusal.kind == "budget":
        budget = refusal.limit
        assert isinstance(budget, BudgetRule)
        return GatewayError(
            429,
            _budget_refusal_message(
                refusal, budget, output_tokens=output_tokens, output_is_ours=output_is_ours
            ),
            type="insufficient_quota",
            code="insufficient_quota",
            headers={"x-should-retry": "false"},
        )
    limit = refusal.limit
    assert isinstance(limit, LimitRule)
    per_minute = limit.rpm if refusal.detail == "requests" else limit.tpm
    headers = {
        f"x-ratelimit-limit-{refusal.detail}": str(per_minute),
        f"x-ratelimit-remaining-{refusal.detail}": "0",
    }
    if refusal.retry_after_ms is None:
        message = (
            f"This request needs more tokens than {limit.owner} limit of {per_minute} tokens "
            "per minute allows."
        )
        headers["x-should-retry"] = "false"
    else:
        message = (
            f"Rate limit reached: {limit.owner} limit of {per_minute} {refusal.detail} per minute."
        )
        headers["retry-after"] = str(max(1, math.ceil(refusal.retry_after_ms / 1000)))
        headers["retry-after-ms"] = str(refusal.retry_after_ms)
        headers[f"x-ratelimit-reset-{refusal.detail}"] = f"{refusal.retry_after_ms}ms"
    return GatewayError(
        429, message, type="rate_limit_error", code="rate_limit_exceeded", headers=headers
    )


async def settle(admission: Admission | None, *, tokens: int, cost: Decimal) -> None:
    """Turn the reservation into real spend; never raises (the answer is already given)."""
    if admission is None or admission.settled:
        return
    try:
        spent = await governor.settle(admission, tokens=tokens, cost=cost)
    except GovernanceUnavailable:
        # The reservation expires by itself; the ledger (audit row) still has the spend and
        # the counter is rebuilt from it.
        logger.warning("could not settle %s: Redis unreachable", admission.request_id)
        return
    except Exception:
        logger.exception("could not settle %s", admission.request_id)
        return
    for budget, tokens_after, cost_after in spent:
        _alert_on_thresholds(admission, budget, tokens_after, cost_after, tokens, cost)


def _crossed(
    limit: Decimal | int | None,
    after: Decimal | int,
    added: Decimal | int,
    thresholds: tuple[int, ...],
) -> list[int]:
    if not limit:
        return []
    before = after - added
    return [t for t in thresholds if before * 100 < limit * t <= after * 100]


def _alert_on_thresholds(
    admission: Admission,
    budget: BudgetRule,
    tokens_after: int,
    cost_after: Decimal,
    tokens: int,
    cost: Decimal,
) -> None:
    crossed = set(_crossed(budget.max_tokens, tokens_after, tokens, budget.thresholds))
    crossed |= set(_crossed(budget.max_cost, cost_after, cost, budget.thresholds))
    if not crossed:
        return
    from billing.tasks import budget_alert_record

    period = next(p for b, p in admission.budgets if b.id == budget.id)
    for threshold in sorted(crossed):
        # Off the event loop: queueing a task is network I/O (or, eagerly, a DB write).
        asyncio.get_running_loop().run_in_executor(
            None,
            functools.partial(
                budget_alert_record.delay,
                budget_id=budget.id,
                period_key=period.key,
                threshold=threshold,
                spent_tokens=tokens_after,
                spent_cost=str(cost_after),
            ),
        )
