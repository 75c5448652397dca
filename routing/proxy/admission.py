"""The admission stage: the request's policy, then one atomic admission for every rate
limit and budget that applies (billing.admission), or a refusal.

Runs once the route is known and before the cache or any upstream is asked: a cache hit
is still counted by the rate limits. What admission reserved travels on the exchange as
its `Guard` until the request is settled.
"""

from __future__ import annotations

from django.conf import settings

from billing.admission import Guard, admit
from billing.rules import BudgetRule, LimitRule
from providers.tokens import count_prompt_tokens, prompt_calibration
from routing.proxy.exchange import Exchange
from routing.proxy.upstream import longest_wait_s
from tenants.policy import check_policy, output_cap, requested_output_cap


def _prompt_tokens(
    exchange: Exchange, limits: list[LimitRule], budgets: list[BudgetRule]
) -> tuple[int, str]:
    """The prompt's tokens as the first target's tokenizer counts them, and that target's
    kind; 0 when nothing needs the number (counting costs CPU)."""
    caller, chat, route = exchange.caller, exchange.chat, exchange.route
    assert caller is not None and chat is not None and route is not None
    governed = settings.GATEWAY_GOVERNANCE_ENABLED
    needs_count = caller.key.policy.max_prompt_tokens is not None or (
        governed and (bool(budgets) or any(limit.tpm is not None for limit in limits))
    )
    counted_with = route.targets[0].kind
    prompt_tokens = count_prompt_tokens(chat.body["messages"], counted_with) if needs_count else 0
    return prompt_tokens, counted_with


def _choices(body: dict) -> int:
    n = body.get("n")
    return n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1


def _guard(exchange: Exchange, *, prompt_tokens: int, counted_with: str, bounded: bool) -> Guard:
    """What the request may produce, and the cap the gateway sends when the client set none."""
    caller, chat, route = exchange.caller, exchange.chat, exchange.route
    assert caller is not None and chat is not None and route is not None
    cap = output_cap(
        body=chat.body,
        route_default=route.default_max_tokens,
        policy_max=caller.key.policy.max_output_tokens,
        bounded=bounded,
    )
    choices = _choices(chat.body)
    guard = Guard(
        prompt_tokens=prompt_tokens,
        output_cap=cap * choices if cap is not None else None,
        injected_cap=None,
        counted_with=counted_with,
        choices=choices,
    )
    if requested_output_cap(chat.body) is None and cap is not None:
        guard.injected_cap = cap  # sent upstream, so the reserved worst case really is one
    return guard


async def admit_exchange(exchange: Exchange, *, body_bytes: int) -> None:
    """Policies, then rate limits and budgets in one atomic admission (or a refusal)."""
    snap, caller, chat, route = exchange.snapshot, exchange.caller, exchange.chat, exchange.route
    assert snap is not None and caller is not None and chat is not None and route is not None
    limits = snap.governance.limits_for(
        tenant_id=caller.tenant.id, key_id=caller.key.id, route_id=route.id, route_name=route.name
    )
    budgets = snap.governance.budgets_for(
        tenant_id=caller.tenant.id, key_id=caller.key.id, route_id=route.id
    )
    prompt_tokens, counted_with = _prompt_tokens(exchange, limits, budgets)
    check_policy(
        tenant=caller.tenant,
        key=caller.key,
        route_name=route.name,
        body=chat.body,
        body_bytes=body_bytes,
        prompt_tokens=prompt_tokens,
    )
    guard = _guard(
        exchange, prompt_tokens=prompt_tokens, counted_with=counted_with, bounded=bool(budgets)
    )
    exchange.guard = guard
    requested = requested_output_cap(chat.body)
    guard.admission = await admit(
        request_id=exchange.request_id,
        limits=limits,
        budgets=budgets,
        prompt_tokens=prompt_tokens,
        tpm_output_tokens=requested or route.default_max_tokens or 0,
        # Every choice of `n` may produce up to the cap, and the upstream bills the prompt
        # as its tokenizer counts it, not as ours does.
        reserve_output_tokens=guard.output_cap or 0,
        reserve_prompt_tokens=prompt_calibration.reserve(
            prompt_tokens,
            counted_with=counted_with,
            target_keys=[target.key for target in route.targets],
            margin=settings.GATEWAY_PROMPT_ESTIMATE_MARGIN,
        )
        if budgets
        else prompt_tokens,
        max_input_price=route.max_input_price,
        max_output_price=route.max_output_price,
        deadline_seconds=longest_wait_s(
            route, stream=chat.stream, timeout_hint_s=chat.hints.timeout_s
        ),
        output_is_ours=guard.injected_cap is not None,
        choices=guard.choices,
    )
    guard.apply_admitted_output()
