"""The governance engine on its own: admission and settlement in Redis (fakeredis without
REDIS_URL), with time moved through the `now=` parameter. No HTTP here."""

from __future__ import annotations

import asyncio
import gc
import random
import uuid
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from audit.models import AuditEvent
from billing.governance import (
    RESERVATIONS_ZSET,
    Admission,
    BudgetSpec,
    Governor,
    LimitSpec,
    OutputReserve,
    Refusal,
    cost_to_units,
    units_to_cost,
)
from billing.periods import EPOCH, Period, period_for
from tests import factories

ROME = ZoneInfo("Europe/Rome")
# A whole second, a day ahead: keys that Redis expires by its own clock (periods end,
# reservations lapse) must not be born dead, whenever the suite runs.
T0 = (timezone.now() + timedelta(days=1)).replace(microsecond=0)
budget_db = pytest.mark.django_db(transaction=True)
HOLD = timedelta(seconds=90)  # how long a reservation outlives its request's admission


@pytest.fixture
async def gov() -> AsyncIterator[Governor]:
    governor = Governor()
    await governor.reset_for_tests()
    yield governor
    await governor.reset_for_tests()
    await governor._client().aclose()
    # Rebuilds read the ledger on the loop's default executor: let its threads (and their
    # database connections) go now, or the test database cannot be dropped at the end.
    await asyncio.get_running_loop().shutdown_default_executor()
    gc.collect()


def limit(name: str = "key:1", *, rpm: int | None = None, tpm: int | None = None) -> LimitSpec:
    return LimitSpec(name, rpm, tpm)


def budget(
    *,
    id: int = 1,
    scope: str = "tenant",
    subject_id: int = 1,
    period: str = "total",
    hard: bool = True,
    max_tokens: int | None = None,
    max_cost: str | None = None,
) -> BudgetSpec:
    return BudgetSpec(
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
    limits: Iterable[LimitSpec] = (),
    budgets: Iterable[BudgetSpec] = (),
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
    result = await admit(gov, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, Admission), result
    return result


async def refused(gov: Governor, **kwargs: object) -> Refusal:
    result = await admit(gov, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, Refusal), result
    return result


async def state(gov: Governor, spec: BudgetSpec, now: datetime = T0) -> dict[str, int]:
    """The budget's Redis hash: st/sc spent and rt/rc reserved (cost in 1e-10 USD)."""
    raw = await gov._client().hgetall(spec.redis_key(period_for(spec.period, now)))
    return {key.decode(): int(value) for key, value in raw.items()}


async def window(gov: Governor, spec: LimitSpec) -> tuple[int, int]:
    """Requests and tokens a rate limit's hash holds."""
    raw = await gov._client().hgetall(spec.redis_key)
    buckets = {k: int(v) for k, v in raw.items() if k[1:].isdigit() and int(k[1:]) > 0}
    requests = sum(v for k, v in buckets.items() if k.startswith(b"r"))
    tokens = sum(v for k, v in buckets.items() if k.startswith(b"t"))
    return requests, tokens


# --- rate limits -------------------------------------------------------------------------------


async def test_an_rpm_limit_admits_exactly_its_limit_and_refuses_the_next(gov):
    rpm5 = limit(rpm=5)
    remaining = []
    for _ in range(5):
        admission = await admitted(gov, limits=[rpm5])
        remaining.append(admission.headers["x-ratelimit-remaining-requests"])
    refusal = await refused(gov, limits=[rpm5])

    assert remaining == ["4", "3", "2", "1", "0"]
    assert (refusal.kind, refusal.detail, refusal.limit) == ("rate_limit", "requests", rpm5)
    # All five were counted at T0 (a whole second): the first slot frees 60 s later.
    assert refusal.retry_after_ms == 60_000
    assert await window(gov, rpm5) == (5, 0)


async def test_tpm_counts_the_estimated_tokens(gov):
    tpm = limit(tpm=100)
    await admitted(gov, limits=[tpm], est=60)
    admission = await admitted(gov, limits=[tpm], est=40)
    refusal = await refused(gov, limits=[tpm], est=1)

    assert admission.headers["x-ratelimit-remaining-tokens"] == "0"
    assert (refusal.kind, refusal.detail) == ("rate_limit", "tokens")
    assert refusal.retry_after_ms == 60_000
    assert await window(gov, tpm) == (2, 100)


async def test_a_request_larger_than_the_whole_tpm_gets_no_retry_time(gov):
    refusal = await refused(gov, limits=[limit(tpm=100)], est=101)

    assert refusal.detail == "tokens"
    assert refusal.retry_after_ms is None


async def test_a_request_refused_by_its_second_limit_counts_nothing_on_the_first(gov):
    roomy, tight = limit("tenant:1", rpm=10, tpm=1000), limit("key:1", rpm=1)
    await admitted(gov, limits=[roomy, tight], est=100)

    refusal = await refused(gov, limits=[roomy, tight], est=100)

    assert refusal.limit == tight
    assert await window(gov, roomy) == (1, 100)
    admission = await admitted(gov, limits=[roomy], est=100)
    assert admission.headers["x-ratelimit-remaining-requests"] == "8"
    assert admission.headers["x-ratelimit-remaining-tokens"] == "800"


@budget_db
async def test_a_request_refused_by_a_budget_counts_nothing_on_the_rate_limits(gov):
    rpm = limit(rpm=10, tpm=1000)
    small = budget(max_tokens=100)

    refusal = await refused(gov, limits=[rpm], budgets=[small], est=50, tokens=150)

    assert (refusal.kind, refusal.detail) == ("budget", "tokens")
    assert await window(gov, rpm) == (0, 0)
    assert await state(gov, small) == {"st": 0, "sc": 0, "rt": 0, "rc": 0}


@budget_db
async def test_a_request_refused_by_a_rate_limit_reserves_nothing_on_the_budgets(gov):
    rpm = limit(rpm=1)
    roomy = budget(max_tokens=1000)
    await admitted(gov, limits=[rpm], budgets=[roomy], tokens=10)

    await refused(gov, limits=[rpm], budgets=[roomy], tokens=10)

    assert (await state(gov, roomy))["rt"] == 10


async def test_the_window_slides_a_request_out_after_sixty_seconds(gov):
    rpm2 = limit(rpm=2)
    await admitted(gov, limits=[rpm2], now=T0)
    await admitted(gov, limits=[rpm2], now=T0 + timedelta(seconds=30))

    halfway = await refused(gov, limits=[rpm2], now=T0 + timedelta(seconds=45))
    assert halfway.retry_after_ms == 15_000  # the T0 request leaves the window at T0+60
    await refused(gov, limits=[rpm2], now=T0 + timedelta(seconds=59, milliseconds=999))

    await admitted(gov, limits=[rpm2], now=T0 + timedelta(seconds=60))
    later = await refused(gov, limits=[rpm2], now=T0 + timedelta(seconds=60))
    assert later.retry_after_ms == 30_000  # now the T0+30 request is the oldest


async def test_tokens_leave_the_window_too(gov):
    tpm = limit(tpm=100)
    await admitted(gov, limits=[tpm], est=100, now=T0)
    await refused(gov, limits=[tpm], est=1, now=T0 + timedelta(seconds=59))

    await admitted(gov, limits=[tpm], est=100, now=T0 + timedelta(seconds=60))


async def test_the_window_sums_match_the_requests_in_it_as_time_moves(gov):
    """Admission keeps running sums of each window instead of reading every second of it:
    checked against a plain list of what was counted when, over steps from a millisecond to
    two windows, with settlements correcting the tokens."""
    rng = random.Random(5)
    big = limit(rpm=100_000, tpm=10_000_000)
    counted: list[list[int]] = []  # [second, tokens] of every admitted request
    now = T0
    for _ in range(300):
        now += timedelta(seconds=rng.choice([0, 0.001, 0.4, 1, 3, 59, 61, 125]))
        second = int(now.timestamp())
        in_window = [entry for entry in counted if entry[0] > second - 60]
        est = rng.randint(1, 40)

        admission = await admitted(gov, limits=[big], est=est, now=now)

        assert admission.headers["x-ratelimit-remaining-requests"] == str(
            100_000 - len(in_window) - 1
        )
        assert admission.headers["x-ratelimit-remaining-tokens"] == str(
            10_000_000 - sum(tokens for _, tokens in in_window) - est
        )
        counted.append([second, est])
        if rng.random() < 0.6:
            used = rng.randint(0, 60)
            await gov.settle(admission, tokens=used, cost=Decimal(0))
            counted[-1][1] = used


async def test_a_window_written_without_sums_is_counted_from_its_seconds(gov):
    """Hashes written before the sums existed (or by a process still running that version)
    hold only per-second fields: they are read whole once, then kept incrementally."""
    tpm = limit(rpm=100, tpm=1000)
    second = int(T0.timestamp())
    await gov._client().hset(
        tpm.redis_key,
        mapping={
            f"r{second - 70}": 9,
            f"t{second - 70}": 900,
            f"r{second - 5}": 2,
            f"t{second - 5}": 300,
            f"r{second}": 1,
            f"t{second}": 50,
        },
    )

    admission = await admitted(gov, limits=[tpm], est=10)

    assert admission.headers["x-ratelimit-remaining-requests"] == str(100 - 3 - 1)
    assert admission.headers["x-ratelimit-remaining-tokens"] == str(1000 - 350 - 10)
    assert admission.headers["x-ratelimit-reset-requests"] == "55s"
    assert await window(gov, tpm) == (4, 360)


async def test_sums_that_went_wrong_are_recounted_within_one_window(gov):
    rpm = limit(rpm=100)
    await admitted(gov, limits=[rpm], now=T0)
    await gov._client().hset(rpm.redis_key, "r0", 77)  # the requests' sum, put off by hand

    later = await admitted(gov, limits=[rpm], now=T0 + timedelta(seconds=30))
    recounted = await admitted(gov, limits=[rpm], now=T0 + timedelta(seconds=61))

    assert later.headers["x-ratelimit-remaining-requests"] == str(100 - 77 - 1)
    assert recounted.headers["x-ratelimit-remaining-requests"] == str(100 - 1 - 1)


async def test_settling_with_fewer_tokens_than_estimated_frees_tpm(gov):
    tpm = limit(tpm=100)
    admission = await admitted(gov, limits=[tpm], est=80)
    await refused(gov, limits=[tpm], est=70)

    await gov.settle(admission, tokens=30, cost=Decimal(0))

    assert await window(gov, tpm) == (1, 30)
    await admitted(gov, limits=[tpm], est=70)


async def test_settling_with_more_tokens_than_estimated_uses_up_tpm(gov):
    tpm = limit(tpm=100)
    admission = await admitted(gov, limits=[tpm], est=10)
    await gov.settle(admission, tokens=90, cost=Decimal(0))

    refusal = await refused(gov, limits=[tpm], est=20)

    assert refusal.detail == "tokens"
    await admitted(gov, limits=[tpm], est=10)


async def test_rate_headers_report_the_tightest_limits(gov):
    roomy = limit("tenant:1", rpm=10, tpm=1000)
    tight = limit("key:1", rpm=3, tpm=5000)
    admission = await admitted(gov, limits=[roomy, tight], est=100)

    headers = admission.headers
    assert headers["x-ratelimit-limit-requests"] == "3"
    assert headers["x-ratelimit-remaining-requests"] == "2"
    assert headers["x-ratelimit-limit-tokens"] == "1000"
    assert headers["x-ratelimit-remaining-tokens"] == "900"
    later = await admitted(gov, limits=[roomy, tight], est=100, now=T0 + timedelta(seconds=10))
    assert later.headers["x-ratelimit-remaining-requests"] == "1"
    assert later.headers["x-ratelimit-reset-requests"] == "50s"
    assert later.headers["x-ratelimit-reset-tokens"] == "50s"


async def test_the_tightest_limit_is_the_one_with_least_left_not_the_smallest(gov):
    big, small = limit("tenant:1", rpm=10), limit("key:1", rpm=5)
    for _ in range(8):
        await admitted(gov, limits=[big])

    admission = await admitted(gov, limits=[big, small])

    assert admission.headers["x-ratelimit-limit-requests"] == "10"
    assert admission.headers["x-ratelimit-remaining-requests"] == "1"
    assert "x-ratelimit-limit-tokens" not in admission.headers


async def test_the_reset_time_counts_the_request_just_admitted(gov):
    admission = await admitted(gov, limits=[limit(rpm=5, tpm=100)], est=10)

    assert admission.headers["x-ratelimit-remaining-requests"] == "4"
    assert admission.headers["x-ratelimit-reset-requests"] == "1m0s"
    assert admission.headers["x-ratelimit-reset-tokens"] == "1m0s"


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


# --- periods and the ledger ----------------------------------------------------------------------


@budget_db
@pytest.mark.parametrize("period", ["daily", "weekly", "monthly"])
async def test_a_budget_starts_afresh_at_the_local_period_boundary(gov, settings, period):
    settings.GATEWAY_BUDGET_TIMEZONE = "Europe/Rome"
    spec = budget(period=period, max_tokens=100)
    current = period_for(period, T0 + timedelta(days=40))
    assert current.end is not None
    last_moment, first_of_next = current.end - timedelta(seconds=1), current.end
    admission = await admitted(gov, budgets=[spec], tokens=100, now=current.start)
    await gov.settle(admission, tokens=100, cost=Decimal(0))

    refusal = await refused(gov, budgets=[spec], tokens=1, now=last_moment)
    await admitted(gov, budgets=[spec], tokens=100, now=first_of_next)

    assert refusal.detail == "tokens"
    assert (await state(gov, spec, first_of_next))["rt"] == 100
    local = first_of_next.astimezone(ROME)
    assert local.time() == time(0, 0)
    if period == "weekly":
        assert local.weekday() == 0  # Monday
    if period == "monthly":
        assert local.day == 1
    # In UTC it is still the day before: a UTC boundary would have refused here.
    assert first_of_next.astimezone(UTC).date() < local.date()


@budget_db
async def test_a_total_budget_never_starts_afresh(gov):
    spec = budget(period="total", max_tokens=100)
    admission = await admitted(gov, budgets=[spec], tokens=100, now=T0)
    await gov.settle(admission, tokens=100, cost=Decimal(0))

    await refused(gov, budgets=[spec], tokens=1, now=T0 + timedelta(days=400))


def ledger_row(tenant, key, route, at: datetime, tokens: int, cost: str) -> AuditEvent:
    return AuditEvent(
        request_id=f"req_{uuid.uuid4().hex}",
        created_at=at,
        tenant=tenant,
        tenant_slug=tenant.slug,
        api_key=key,
        route_id=route.id,
        route=route.name,
        outcome="success",
        status_code=200,
        total_tokens=tokens,
        cost_usd=Decimal(cost),
    )


@pytest.fixture
def ledger(transactional_db, settings):
    """A month of acme's spend in Rome time, plus rows that must not be counted."""
    settings.GATEWAY_BUDGET_TIMEZONE = "Europe/Rome"
    acme, globex = factories.make_tenant("acme"), factories.make_tenant("globex")
    key, other_key = factories.make_key(acme).api_key, factories.make_key(acme).api_key
    model = factories.make_model(factories.make_provider())
    route, other_route = factories.make_route("chat", model), factories.make_route("other", model)
    month = period_for("monthly", T0)  # local midnight on the 1st: 22:00/23:00 UTC
    assert month.end is not None
    second_day = month.start + timedelta(days=1)
    AuditEvent.objects.bulk_create(
        [
            ledger_row(acme, key, route, month.start, 100, "0.0000000001"),
            ledger_row(acme, key, route, second_day, 250, "1.2345678901"),
            ledger_row(acme, key, route, month.end - timedelta(seconds=1), 7, "0.0000123457"),
            # The last second of the month before (in Rome), and the first of the next.
            ledger_row(acme, key, route, month.start - timedelta(seconds=1), 1000, "9"),
            ledger_row(acme, key, route, month.end, 1000, "9"),
            # Another tenant, another key, another route.
            ledger_row(globex, None, other_route, second_day, 5000, "50"),
            ledger_row(acme, other_key, other_route, second_day, 3000, "30"),
        ]
    )
    return {"acme": acme, "key": key, "route": route}


@pytest.mark.parametrize(
    ("scope", "acme_total"),
    [
        ("tenant", (100 + 250 + 7 + 3000, Decimal("31.2345802359"))),
        ("key", (100 + 250 + 7, Decimal("1.2345802359"))),
        ("route", (100 + 250 + 7, Decimal("1.2345802359"))),
    ],
)
async def test_a_missing_counter_is_rebuilt_from_the_ledger_of_its_period(
    gov, ledger, scope, acme_total
):
    subject = {"tenant": ledger["acme"], "key": ledger["key"], "route": ledger["route"]}[scope]
    spec = budget(scope=scope, subject_id=subject.id, period="monthly", max_tokens=10**6)

    await admitted(gov, budgets=[spec], tokens=0, cost="0")

    tokens, cost = acme_total
    assert await state(gov, spec) == {"st": tokens, "sc": cost_to_units(cost), "rt": 0, "rc": 0}


async def test_a_flushed_redis_is_rebuilt_from_the_ledger_before_deciding(gov, ledger):
    spec = budget(scope="key", subject_id=ledger["key"].id, period="monthly", max_tokens=357 + 100)
    await admitted(gov, budgets=[spec], tokens=100)  # counter built: 357 spent
    await sync_to_async(AuditEvent.objects.bulk_create)(
        [ledger_row(ledger["acme"], ledger["key"], ledger["route"], T0, 100, "0.5")]
    )

    await gov.reset_for_tests()  # Redis restarted: every counter is gone

    # The ledger now holds 457 tokens: a request that would have fit before is refused.
    refusal = await refused(gov, budgets=[spec], tokens=1)
    assert refusal.detail == "tokens"
    assert await state(gov, spec) == {
        "st": 457,
        "sc": cost_to_units(Decimal("1.7345802359")),
        "rt": 0,
        "rc": 0,
    }


# --- periods ---------------------------------------------------------------------------------------


@pytest.fixture
def rome(settings):
    settings.GATEWAY_BUDGET_TIMEZONE = "Europe/Rome"


def hours(period: Period) -> float:
    # Aware datetimes sharing a tzinfo subtract as wall-clock times: compare real instants.
    assert period.end is not None
    return (period.end.astimezone(UTC) - period.start.astimezone(UTC)) / timedelta(hours=1)


def test_a_daylight_saving_day_in_rome_lasts_23_hours(rome):
    spring = period_for("daily", datetime(2027, 3, 28, 12, tzinfo=ROME))
    autumn = period_for("daily", datetime(2027, 10, 31, 12, tzinfo=ROME))

    assert spring.key == "d20270328"
    assert spring.start == datetime(2027, 3, 27, 23, tzinfo=UTC)
    assert spring.end == datetime(2027, 3, 28, 22, tzinfo=UTC)
    assert hours(spring) == 23
    assert hours(autumn) == 25


def test_the_week_with_the_clock_change_lasts_167_hours(rome):
    week = period_for("weekly", datetime(2027, 3, 28, 12, tzinfo=ROME))

    assert week.start == datetime(2027, 3, 22, tzinfo=ROME)
    assert hours(week) == 167


def test_a_week_starts_on_monday(rome):
    sunday_night = period_for("weekly", datetime(2027, 3, 21, 23, 59, 59, tzinfo=ROME))
    monday = period_for("weekly", datetime(2027, 3, 22, tzinfo=ROME))

    assert sunday_night.key == "w20270315"
    assert sunday_night.start == datetime(2027, 3, 15, tzinfo=ROME)
    assert sunday_night.start.weekday() == 0
    assert sunday_night.end == monday.start == datetime(2027, 3, 22, tzinfo=ROME)
    assert monday.key == "w20270322"


def test_december_rolls_over_into_january_of_the_next_year(rome):
    december = period_for("monthly", datetime(2027, 12, 31, 23, 59, 59, tzinfo=ROME))
    # 23:30 UTC on 31 December is already 1 January in Rome.
    january = period_for("monthly", datetime(2027, 12, 31, 23, 30, tzinfo=UTC))

    assert december.key == "m202712"
    assert december.start == datetime(2027, 12, 1, tzinfo=ROME)
    assert december.end == january.start == datetime(2028, 1, 1, tzinfo=ROME)
    assert january.key == "m202801"
    assert january.end == datetime(2028, 2, 1, tzinfo=ROME)


def test_a_period_contains_its_start_and_not_its_end(rome):
    for kind in ("daily", "weekly", "monthly"):
        period = period_for(kind, datetime(2027, 6, 15, 10, tzinfo=ROME))
        assert period_for(kind, period.start) == period
        assert period.end is not None
        assert period_for(kind, period.end).start == period.end
        assert period_for(kind, period.end - timedelta(microseconds=1)) == period


def test_periods_follow_the_configured_zone_utc_here(settings):
    settings.GATEWAY_BUDGET_TIMEZONE = "UTC"
    day = period_for("daily", datetime(2027, 1, 15, 23, 30, tzinfo=UTC))

    assert day.start == datetime(2027, 1, 15, tzinfo=UTC)
    assert day.key == "d20270115"


def test_a_total_budget_has_one_period_from_the_epoch():
    total = period_for("total", T0)

    assert (total.key, total.start, total.end) == ("total", EPOCH, None)


def test_an_unknown_period_is_an_error():
    with pytest.raises(ValueError, match="hourly"):
        period_for("hourly", T0)
