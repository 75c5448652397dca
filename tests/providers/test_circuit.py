"""Circuit breakers: shared through Redis (the fakeredis fallback without REDIS_URL), cheap
on the hot path, and never in the way when Redis is gone."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from gateway_project.lib import redis_client
from providers.base import Target
from providers.circuit import (
    CLOSED,
    HALF_OPEN,
    OPEN,
    Breaker,
)
from providers.circuit_lua import KEY_PREFIX

START = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def target(
    model: str = "gpt-test", *, provider: str = "acme-ai", threshold: int = 3, cooldown: int = 30
) -> Target:
    return Target(
        provider_id=1,
        provider_name=provider,
        kind="openai",
        base_url="https://upstream.invalid",
        api_key_env="",
        model=model,
        input_per_million=Decimal(0),
        output_per_million=Decimal(0),
        circuit_failure_threshold=threshold,
        circuit_cooldown_s=cooldown,
    )


@pytest.fixture(autouse=True)
def _fresh(fresh_circuits: None) -> None:
    """Every test starts with every circuit closed (tests/conftest.py)."""


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def make_breaker(clock: Clock):
    def make(**kwargs: object) -> Breaker:
        kwargs.setdefault("clock", clock)
        return Breaker(**kwargs)

    return make


@pytest.fixture
async def commands() -> AsyncIterator[list[str]]:
    """Every command this event loop's Redis client sends (the one the breakers use)."""
    client = redis_client.async_client()
    sent: list[str] = []
    original = client.execute_command

    async def execute_command(*args: object, **options: object) -> object:
        sent.append(str(args[0]))
        return await original(*args, **options)

    client.execute_command = execute_command
    yield sent
    del client.execute_command


async def fail(b: Breaker, t: Target, times: int = 1, kind: str = "server_error") -> None:
    for _ in range(times):
        await b.record(t, ok=False, kind=kind)


async def state_of(b: Breaker, t: Target) -> str:
    [state] = await b.states([t.key])
    return state.state


async def test_it_opens_after_the_threshold_of_consecutive_failures(make_breaker):
    b, t = make_breaker(), target(threshold=3)
    await fail(b, t, 2)
    assert await b.allow(t) is True
    await fail(b, t)
    assert await b.allow(t) is False
    [state] = await b.states([t.key])
    assert state.state == OPEN
    assert state.consecutive_failures == 3
    assert state.next_probe_at is not None
    assert state.opened_at is not None
    assert (state.next_probe_at - state.opened_at).total_seconds() == 30


async def test_a_success_restarts_the_consecutive_count(make_breaker):
    b, t = make_breaker(), target(threshold=3)
    await fail(b, t, 2)
    await b.record(t, ok=True, kind="")
    await fail(b, t, 2)
    assert await b.allow(t) is True
    assert await state_of(b, t) == CLOSED


async def test_it_opens_when_half_the_attempts_in_the_window_fail(make_breaker):
    b, t = make_breaker(), target(threshold=100)
    for _ in range(10):  # 20 attempts, 10 failures, never two in a row
        await fail(b, t)
        await b.record(t, ok=True, kind="")
    [state] = await b.states([t.key])
    assert (state.state, state.window_failures, state.window_attempts) == (CLOSED, 10, 20)
    await fail(b, t)  # 11 of 21
    assert await state_of(b, t) == OPEN
    assert await b.allow(t) is False


async def test_the_failure_rate_needs_the_minimum_number_of_attempts(make_breaker):
    b, t = make_breaker(min_attempts=20), target(threshold=100)
    await fail(b, t, 19)
    assert await state_of(b, t) == CLOSED
    await fail(b, t)
    assert await state_of(b, t) == OPEN


async def test_failures_older_than_the_window_no_longer_count(make_breaker, clock):
    b, t = make_breaker(), target(threshold=100)
    await fail(b, t, 15)
    clock.advance(61)
    await fail(b, t, 15)
    [state] = await b.states([t.key])
    assert (state.state, state.window_failures, state.window_attempts) == (CLOSED, 15, 15)


async def test_an_answer_that_is_not_the_targets_fault_does_not_count(make_breaker):
    b, t = make_breaker(), target(threshold=2)
    await fail(b, t, 5, kind="client_error")
    await fail(b, t, 5, kind="cancelled")
    assert await b.allow(t) is True
    assert await state_of(b, t) == CLOSED


async def test_an_open_target_is_skipped_without_a_redis_round_trip(make_breaker, commands):
    b, healthy, broken = make_breaker(), target("healthy"), target("broken", threshold=1)
    await fail(b, broken)
    assert await b.allows([healthy, broken]) == {healthy.key: True, broken.key: False}
    sent = len(commands)
    for _ in range(50):
        assert await b.allows([healthy, broken]) == {healthy.key: True, broken.key: False}
    assert len(commands) == sent


async def test_refresh_lets_is_open_answer_without_io(make_breaker, clock, commands):
    first, second = make_breaker(), make_breaker()
    healthy, broken = target("healthy"), target("broken", threshold=1, cooldown=30)
    await fail(first, broken)
    await second.refresh([healthy, broken])
    sent = len(commands)
    assert second.is_open(broken) is True
    assert second.is_open(healthy) is False
    assert len(commands) == sent
    clock.advance(30)  # probe due: no longer skipped, allow() decides
    assert second.is_open(broken) is False
    assert await second.allow(broken) is True
    assert first.is_open(broken) is False  # its copy is stale until the next refresh
    await first.refresh([broken])
    assert first.is_open(broken) is True  # the other process's probe is out


async def test_states_are_refreshed_in_one_round_trip_per_cache_interval(
    make_breaker, clock, commands
):
    b = make_breaker()
    targets = [target(f"m{i}") for i in range(5)]
    await b.allows(targets)
    assert commands.count("EVALSHA") == 1
    clock.advance(0.4)
    await b.allows(targets)
    assert commands.count("EVALSHA") == 1
    clock.advance(0.2)
    await asyncio.gather(*(b.allows(targets) for _ in range(20)))
    assert commands.count("EVALSHA") == 2


async def test_after_the_cooldown_exactly_one_probe_is_granted_across_processes(
    make_breaker, clock
):
    first, second, t = make_breaker(), make_breaker(), target(threshold=1, cooldown=30)
    await fail(first, t)
    assert await second.allow(t) is False
    clock.advance(29)
    assert await first.allow(t) is False

    clock.advance(1)
    answers = await asyncio.gather(*(b.allow(t) for b in (first, second) * 10))
    assert answers.count(True) == 1
    assert await state_of(first, t) == HALF_OPEN
    [state] = await first.states([t.key])
    assert state.probe_in_flight


async def test_a_successful_probe_closes_the_circuit_everywhere(make_breaker, clock):
    first, second, t = make_breaker(), make_breaker(), target(threshold=1, cooldown=30)
    await fail(first, t)
    assert await second.allow(t) is False
    clock.advance(30)
    assert await first.allow(t) is True  # the probe
    assert await second.allow(t) is False
    await first.record(t, ok=True, kind="")
    assert await first.allow(t) is True
    assert await state_of(first, t) == CLOSED
    clock.advance(0.5)
    assert await second.allow(t) is True


async def test_a_failed_probe_opens_the_circuit_for_another_cooldown(make_breaker, clock):
    b, t = make_breaker(), target(threshold=1, cooldown=30)
    await fail(b, t)
    clock.advance(30)
    assert await b.allow(t) is True
    await fail(b, t, kind="timeout")
    assert await b.allow(t) is False
    clock.advance(29)
    assert await b.allow(t) is False
    clock.advance(1)
    assert await b.allow(t) is True


async def test_only_the_probes_answer_decides(make_breaker, clock):
    first, second, t = make_breaker(), make_breaker(), target(threshold=1, cooldown=30)
    await first.allow(t)
    await second.allow(t)  # both saw it closed: their requests are in flight
    await fail(first, t)
    clock.advance(30)
    assert await first.allow(t) is True  # the probe
    # The other process's request, sent before the circuit opened, answers late.
    await second.record(t, ok=True, kind="")
    await fail(second, t)
    assert await state_of(first, t) == HALF_OPEN
    await first.record(t, ok=True, kind="")
    assert await state_of(first, t) == CLOSED


async def test_a_probe_that_never_answers_is_granted_again_after_its_lease(
    make_breaker, clock, settings
):
    settings.GATEWAY_CIRCUIT_PROBE_LEASE_SECONDS = 10
    first, second, t = make_breaker(), make_breaker(), target(threshold=1, cooldown=30)
    await fail(first, t)
    clock.advance(30)
    assert await first.allow(t) is True  # its process dies with the probe
    clock.advance(9)
    assert await second.allow(t) is False
    clock.advance(1)
    assert await second.allow(t) is True
    await second.record(t, ok=True, kind="")
    assert await state_of(second, t) == CLOSED


async def test_a_probe_handed_back_unused_lets_the_next_caller_probe(make_breaker, clock):
    b, t = make_breaker(), target(threshold=1, cooldown=30)
    await fail(b, t)
    clock.advance(30)
    assert await b.allow(t) is True
    await b.release(t)
    assert await b.allow(t) is True


async def test_a_success_on_a_clean_closed_circuit_writes_nothing(make_breaker, commands):
    b, t = make_breaker(), target()
    assert await b.allow(t) is True
    before = list(commands)
    for _ in range(20):
        await b.record(t, ok=True, kind="")
    assert commands == before
    client = redis_client.async_client()
    assert await client.exists(KEY_PREFIX + t.key) == 0


async def test_successes_are_counted_while_the_window_holds_failures(make_breaker, clock, commands):
    b, t = make_breaker(), target(threshold=3)
    await fail(b, t, 2)
    sent = len(commands)
    await b.record(t, ok=True, kind="")
    await b.record(t, ok=True, kind="")
    assert len(commands) == sent + 2
    [state] = await b.states([t.key])
    assert (state.consecutive_failures, state.window_failures, state.window_attempts) == (0, 2, 4)

    clock.advance(61)  # the failures leave the window: the next success cleans up
    await b.record(t, ok=True, kind="")
    sent = len(commands)
    for _ in range(5):
        await b.record(t, ok=True, kind="")
    assert len(commands) == sent
    assert await redis_client.async_client().exists(KEY_PREFIX + t.key) == 0


async def test_the_state_is_shared_between_processes_after_the_cache_interval(make_breaker, clock):
    first, second, t = make_breaker(), make_breaker(), target(threshold=2)
    assert await second.allow(t) is True  # cached: closed
    await fail(first, t, 2)
    clock.advance(0.4)
    assert await second.allow(t) is True  # still its cached copy
    clock.advance(0.1)
    assert await second.allow(t) is False


async def test_failures_from_two_processes_add_up(make_breaker, clock):
    first, second, t = make_breaker(), make_breaker(), target(threshold=4)
    await fail(first, t, 2)
    await fail(second, t, 2)
    assert await second.allow(t) is False
    clock.advance(0.5)
    assert await first.allow(t) is False
    assert await second.allow(t) is False


async def test_reset_closes_the_circuit(make_breaker, clock):
    b, t = make_breaker(), target(threshold=1)
    await fail(b, t)
    await b.reset([t.key])
    assert await b.allow(t) is True
    [state] = await b.states([t.key])
    assert (state.state, state.consecutive_failures) == (CLOSED, 0)


async def test_states_without_keys_lists_every_circuit_redis_holds(make_breaker):
    b = make_breaker()
    await fail(b, target("one"))
    await fail(b, target("two"))
    assert [s.key for s in await b.states()] == ["acme-ai/one", "acme-ai/two"]


async def test_without_redis_every_circuit_is_closed_and_nothing_raises(
    make_breaker, clock, caplog
):
    b, t = make_breaker(redis_url="redis://127.0.0.1:1/0"), target(threshold=1)
    with caplog.at_level(logging.WARNING, logger="providers.circuit"):
        assert await b.allows([t]) == {t.key: True}
        await fail(b, t, 3)
        await b.record(t, ok=True, kind="")
        assert await b.allow(t) is True
        clock.advance(2)  # past the back-off: Redis is tried again, still refused
        assert await b.allow(t) is True
        await fail(b, t)
    warnings = [r for r in caplog.records if r.name == "providers.circuit"]
    assert len(warnings) == 1  # rate-limited
    assert "unreachable" in warnings[0].getMessage()
