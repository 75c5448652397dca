"""Budgets in the governance counters (billing/counters.py): reservations, settlement,
output lowered to what a hard budget affords. No HTTP here."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from billing.counters import (
    RESERVATIONS_ZSET,
    Admission,
    OutputReserve,
    cost_to_units,
    units_to_cost,
)
from tests.billing.counters_support import (
    HOLD,
    T0,
    admit,
    admitted,
    budget,
    budget_db,
    limit,
    refused,
    state,
)

# --- budgets -----------------------------------------------------------------------------------


@budget_db
async def test_a_hard_token_budget_refuses_what_would_pass_it(gov):
    spec = budget(max_tokens=100)
    await admitted(gov, budgets=[spec], tokens=60)

    refusal = await refused(gov, budgets=[spec], tokens=41)

    assert (refusal.kind, refusal.detail, refusal.limit) == ("budget", "tokens", spec)
    await admitted(gov, budgets=[spec], tokens=40)  # exactly the limit still fits
    assert (await state(gov, spec))["rt"] == 100


@budget_db
async def test_a_hard_cost_budget_refuses_what_would_pass_it(gov):
    spec = budget(max_cost="1.00")
    await admitted(gov, budgets=[spec], cost="0.6")

    refusal = await refused(gov, budgets=[spec], cost="0.4000000001")

    assert (refusal.kind, refusal.detail) == ("budget", "cost")
    await admitted(gov, budgets=[spec], cost="0.4")
    assert (await state(gov, spec))["rc"] == cost_to_units(Decimal("1.00"))


@budget_db
async def test_a_soft_budget_admits_past_its_limit(gov):
    spec = budget(hard=False, max_tokens=100, max_cost="0.01")

    await admitted(gov, budgets=[spec], tokens=500, cost="1")
    await admitted(gov, budgets=[spec], tokens=500, cost="1")

    assert await state(gov, spec) == {
        "st": 0,
        "sc": 0,
        "rt": 1000,
        "rc": cost_to_units(Decimal(2)),
    }


@budget_db
async def test_settling_turns_the_reservation_into_the_actual_spend(gov):
    spec = budget(max_tokens=1000, max_cost="10")
    admission = await admitted(gov, budgets=[spec], tokens=100, cost="0.5")
    assert await state(gov, spec) == {"st": 0, "sc": 0, "rt": 100, "rc": 5_000_000_000}

    spent = await gov.settle(admission, tokens=42, cost=Decimal("0.21"))

    assert await state(gov, spec) == {"st": 42, "sc": 2_100_000_000, "rt": 0, "rc": 0}
    assert spent == [(spec, 42, Decimal("0.21"))]


@budget_db
async def test_a_failed_request_settles_at_zero_and_gives_everything_back(gov):
    spec = budget(max_tokens=100)
    admission = await admitted(gov, budgets=[spec], tokens=100)
    await refused(gov, budgets=[spec], tokens=1)

    await gov.settle(admission, tokens=0, cost=Decimal(0))

    assert await state(gov, spec) == {"st": 0, "sc": 0, "rt": 0, "rc": 0}
    await admitted(gov, budgets=[spec], tokens=100)


@budget_db
async def test_settling_twice_counts_once(gov):
    spec = budget(max_tokens=1000)
    admission = await admitted(gov, budgets=[spec], tokens=100)

    first = await gov.settle(admission, tokens=40, cost=Decimal(0))
    second = await gov.settle(admission, tokens=40, cost=Decimal(0))

    assert first == [(spec, 40, Decimal(0))]
    assert second == []
    assert await state(gov, spec) == {"st": 40, "sc": 0, "rt": 0, "rc": 0}


@budget_db
async def test_a_reservation_of_a_killed_request_expires(gov):
    spec = budget(max_tokens=100)
    ttl = HOLD
    await admitted(gov, budgets=[spec], tokens=80, now=T0)  # its process dies: never settled

    await refused(gov, budgets=[spec], tokens=80, now=T0 + ttl - timedelta(seconds=1))
    await admitted(gov, budgets=[spec], tokens=80, now=T0 + ttl + timedelta(seconds=1))

    assert (await state(gov, spec))["rt"] == 80  # only the new request's


@budget_db
async def test_a_reservation_is_held_for_its_own_requests_deadline_not_a_fixed_quarter_hour(gov):
    spec = budget(max_tokens=100)
    # Two requests die unsettled: one that could have run 20 s, one that could run 300 s.
    await admitted(gov, budgets=[spec], tokens=40, hold=20, now=T0)
    await admitted(gov, budgets=[spec], tokens=40, hold=300, now=T0)

    await refused(gov, budgets=[spec], tokens=40, now=T0 + timedelta(seconds=19))
    # 21 s later only the long one still holds: the short one's 40 tokens are free again.
    later = await admitted(gov, budgets=[spec], tokens=40, now=T0 + timedelta(seconds=21))
    assert (await state(gov, spec, T0))["rt"] == 80
    await gov.settle(later, tokens=0, cost=Decimal(0))
    await admitted(gov, budgets=[spec], tokens=100, now=T0 + timedelta(seconds=301))


@budget_db
async def test_a_running_requests_reservation_is_extended_but_a_settled_one_stays_gone(gov):
    spec = budget(max_tokens=100)
    running = await admitted(gov, budgets=[spec], tokens=60, hold=10, now=None)
    done = await admitted(gov, budgets=[spec], tokens=10, hold=10, now=None)
    await gov.settle(done, tokens=5, cost=Decimal(0))

    assert await gov.renew(running, hold_seconds=600) is True
    assert await gov.renew(done, hold_seconds=600) is False

    client = gov._client()
    assert await client.zscore(RESERVATIONS_ZSET, done.request_id) is None
    expiry = await client.zscore(RESERVATIONS_ZSET, running.request_id)
    assert expiry == running.expires_at_ms
    assert expiry >= (timezone.now() + timedelta(seconds=590)).timestamp() * 1000
    # Past its first hold it still counts: a sweep then leaves it alone.
    await refused(gov, budgets=[spec], tokens=60, now=timezone.now() + timedelta(seconds=30))


def ours(
    tokens: int, *, price: str = "0", prompt_cost: str = "0", least: int = 10
) -> OutputReserve:
    """An output cap the gateway chose (the client set none), so admission may lower it."""
    return OutputReserve(
        tokens=tokens,
        price_per_million=Decimal(price),
        prompt_cost=Decimal(prompt_cost),
        min_tokens=least,
    )


@budget_db
async def test_a_worst_case_the_budget_cannot_afford_is_lowered_to_the_output_it_can(gov):
    spec = budget(max_tokens=1000, max_cost="1")
    spent = await admitted(gov, budgets=[spec], tokens=800, cost="0.5")
    await gov.settle(spent, tokens=800, cost=Decimal("0.5"))
    # 20 prompt tokens and up to 4096 output tokens at $100 per million output tokens:
    # 200 tokens are left, and $0.5 of cost, which 180 output tokens fit within.
    admission = await admitted(
        gov,
        budgets=[spec],
        tokens=20 + 4096,
        cost=str(Decimal("0.000020") + Decimal(4096) * 100 / 10**6),
        output=ours(4096, price="100", prompt_cost="0.000020"),
    )

    assert admission.output_tokens == 180
    assert admission.reserved_tokens == 200
    assert admission.reserved_cost == Decimal("0.000020") + Decimal(180) * 100 / 10**6
    assert await state(gov, spec) == {
        "st": 800,
        "sc": cost_to_units(Decimal("0.5")),
        "rt": 200,
        "rc": cost_to_units(admission.reserved_cost),
    }


@budget_db
async def test_the_cost_limit_lowers_the_output_when_it_binds_before_the_token_limit(gov):
    spec = budget(max_tokens=10**6, max_cost="0.01")
    admission = await admitted(
        gov,
        budgets=[spec],
        tokens=10 + 4096,
        cost=str(Decimal(4096) * 10 / 10**6),
        output=ours(4096, price="10"),
    )

    assert admission.output_tokens == 1000  # $0.01 at $10 per million
    assert admission.reserved_cost == Decimal("0.01")


@budget_db
async def test_a_budget_that_affords_fewer_than_the_minimum_output_refuses(gov):
    spec = budget(max_tokens=100)
    await admitted(gov, budgets=[spec], tokens=85)

    refusal = await refused(gov, budgets=[spec], tokens=5 + 4096, output=ours(4096, least=16))

    assert (refusal.detail, refusal.exhausted, refusal.fitting_output_tokens) == (
        "tokens",
        False,
        10,
    )
    assert (await state(gov, spec))["rt"] == 85  # nothing counted


@budget_db
async def test_a_cap_the_client_set_is_never_lowered_and_the_refusal_says_what_fits(gov):
    spec = budget(max_tokens=100)
    client_cap = OutputReserve(tokens=500, price_per_million=Decimal(0), prompt_cost=Decimal(0))

    refusal = await refused(gov, budgets=[spec], tokens=20 + 500, output=client_cap)

    assert (refusal.detail, refusal.exhausted, refusal.fitting_output_tokens) == (
        "tokens",
        False,
        80,
    )
    spent = await admitted(gov, budgets=[spec], tokens=100)
    await gov.settle(spent, tokens=100, cost=Decimal(0))
    assert (await refused(gov, budgets=[spec], tokens=1)).exhausted is True


@budget_db
async def test_a_soft_budget_beside_a_hard_one_reserves_the_lowered_worst_case_too(gov):
    hard, soft = budget(id=1, max_tokens=300), budget(id=2, hard=False, max_tokens=10)

    admission = await admitted(gov, budgets=[hard, soft], tokens=50 + 4096, output=ours(4096))

    assert admission.output_tokens == 250
    assert (await state(gov, hard))["rt"] == (await state(gov, soft))["rt"] == 300


@budget_db
async def test_spending_past_the_reservation_is_counted_as_an_overrun_on_every_budget(gov):
    tenant_budget, key_budget = budget(id=1, max_cost="10"), budget(id=2, max_tokens=10**6)
    covered = await admitted(gov, budgets=[tenant_budget, key_budget], tokens=100, cost="0.1")
    await gov.settle(covered, tokens=90, cost=Decimal("0.09"))
    for state_of in (tenant_budget, key_budget):
        assert "ov" not in await state(gov, state_of)

    short = await admitted(gov, budgets=[tenant_budget, key_budget], tokens=100, cost="0.1")
    await gov.settle(short, tokens=130, cost=Decimal("0.13"))

    for state_of in (tenant_budget, key_budget):
        counters = await state(gov, state_of)
        assert (counters["ov"], counters["ovt"], counters["ovc"]) == (
            1,
            30,
            cost_to_units(Decimal("0.03")),
        )


@budget_db
async def test_settling_after_the_reservation_expired_records_the_spend_once(gov):
    spec = budget(max_tokens=1000, max_cost="10")
    ttl = HOLD
    slow = await admitted(gov, budgets=[spec], tokens=300, cost="3", now=T0)
    fresh = await admitted(
        gov, budgets=[spec], tokens=10, cost="0.1", now=T0 + ttl + timedelta(seconds=1)
    )
    assert (await state(gov, spec))["rt"] == 10  # the slow one's reservation was swept

    spent = await gov.settle(slow, tokens=250, cost=Decimal("2.5"))

    # The spend is recorded; the swept reservation is not given back a second time.
    assert spent == [(spec, 250, Decimal("2.5"))]
    assert await state(gov, spec) == {
        "st": 250,
        "sc": cost_to_units(Decimal("2.5")),
        "rt": 10,
        "rc": cost_to_units(Decimal("0.1")),
    }
    await gov.settle(fresh, tokens=5, cost=Decimal("0.05"))
    assert await state(gov, spec) == {
        "st": 255,
        "sc": cost_to_units(Decimal("2.55")),
        "rt": 0,
        "rc": 0,
    }


@budget_db
async def test_a_killed_requests_reservation_is_released_after_a_long_quiet_spell(gov):
    spec = budget(max_tokens=100)
    # Admitted two hours ago and killed; nothing was admitted anywhere since.
    await admitted(gov, budgets=[spec], tokens=80, now=timezone.now() - timedelta(hours=2))

    result = await admit(gov, budgets=[spec], tokens=80, now=None)

    assert isinstance(result, Admission)
    assert (await state(gov, spec))["rt"] == 80


@budget_db
async def test_a_free_models_reservation_settles(gov):
    """A token budget on a zero-priced route reserves no cost at all."""
    spec = budget(max_tokens=100)
    admission = await admitted(gov, budgets=[spec], tokens=50, cost="0")

    await gov.settle(admission, tokens=30, cost=Decimal(0))

    assert await state(gov, spec) == {"st": 30, "sc": 0, "rt": 0, "rc": 0}


@budget_db
async def test_an_expired_zero_cost_reservation_does_not_break_admission(gov):
    spec = budget(max_tokens=100)
    ttl = HOLD
    await admitted(gov, budgets=[spec], tokens=50, cost="0", now=T0)  # killed, never settled

    # Any later admission sweeps it, even one of another tenant with only a rate limit.
    later = T0 + ttl + timedelta(seconds=1)
    await admitted(gov, limits=[limit("tenant:2", rpm=10)], now=later)

    assert (await state(gov, spec))["rt"] == 0


@budget_db
async def test_costs_with_ten_decimal_places_add_up_exactly(gov):
    spec = budget(max_cost="0.3")
    for _ in range(3):
        admission = await admitted(gov, budgets=[spec], cost="0.1")
        await gov.settle(admission, tokens=1, cost=Decimal("0.1"))
    # 0.1 + 0.1 + 0.1 is 0.3 exactly here (as a float it would be 0.30000000000000004).
    assert units_to_cost((await state(gov, spec))["sc"]) == Decimal("0.3")
    await admitted(gov, budgets=[spec], cost="0")
    await refused(gov, budgets=[spec], cost="0.0000000001")

    other = budget(id=2, hard=False, max_cost="1000")
    costs = [Decimal("0.0000000001"), Decimal("0.0000123457"), Decimal("1.2345678901")] * 40
    spent: list = []
    for cost in costs:
        admission = await admitted(gov, budgets=[other], cost=str(cost))
        spent = await gov.settle(admission, tokens=1, cost=cost)
    assert spent == [(other, len(costs), Decimal("49.383209436"))]
    assert units_to_cost((await state(gov, other))["sc"]) == sum(costs)
