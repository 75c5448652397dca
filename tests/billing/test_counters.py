"""The governance counters on their own (billing/counters.py): rate limits and the budget
ledger in Redis (fakeredis without REDIS_URL), with time moved through the `now=`
parameter. No HTTP here."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from billing.counters import (
    cost_to_units,
    limit_counter_key,
)
from billing.models import UsageLine
from billing.periods import period_for
from tests import factories
from tests.billing.counters_support import (
    ROME,
    T0,
    admitted,
    budget,
    budget_db,
    limit,
    refused,
    state,
    window,
)
from tests.conftest import forget_governance_counters

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
        limit_counter_key(tpm),
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
    await gov._client().hset(limit_counter_key(rpm), "r0", 77)  # the requests' sum, put off by hand

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


def ledger_row(tenant, key, route, at: datetime, tokens: int, cost: str) -> UsageLine:
    return UsageLine(
        request_id=f"req_{uuid.uuid4().hex}",
        created_at=at,
        tenant_id=tenant.id,
        tenant_slug=tenant.slug,
        api_key_id=key.id if key else None,
        route_id=route.id,
        route=route.name,
        outcome="success",
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
    UsageLine.objects.bulk_create(
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
    await sync_to_async(UsageLine.objects.bulk_create)(
        [ledger_row(ledger["acme"], ledger["key"], ledger["route"], T0, 100, "0.5")]
    )

    await forget_governance_counters()  # Redis restarted: every counter is gone

    # The ledger now holds 457 tokens: a request that would have fit before is refused.
    refusal = await refused(gov, budgets=[spec], tokens=1)
    assert refusal.detail == "tokens"
    assert await state(gov, spec) == {
        "st": 457,
        "sc": cost_to_units(Decimal("1.7345802359")),
        "rt": 0,
        "rc": 0,
    }
