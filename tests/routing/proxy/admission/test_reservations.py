"""Budget reservations: those of requests that never settle lapse after their deadline,
prompts billed above our count are reserved as billed, long streams renew theirs; through
the proxy, in-process (ASGI handler, real database, Redis or the in-process fakeredis for
the counters)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from billing.counters import cost_to_units, governor
from billing.rules import LimitRule
from providers.tokens import count_prompt_tokens
from tests.fakes.upstreams import COMPLETION_TOKENS, PROMPT_TOKENS
from tests.routing.proxy.admission.support import (
    USER,
    add_budget,
    budget_counter,
    chat,
    post,
)

pytestmark = pytest.mark.django_db(transaction=True)


# --- reservations of requests that never settle ------------------------------------------------


@pytest.fixture
def never_settled(monkeypatch):
    """The process dies after admitting: nothing is ever settled."""

    async def dead(*args: object, **kwargs: object) -> list:
        return []

    monkeypatch.setattr(governor, "settle", dead)


def set_timeouts(provider, **fields: object) -> None:
    for name, value in fields.items():
        setattr(provider, name, value)
    provider.save()  # through post_save: the snapshot sees it


@pytest.mark.parametrize(
    ("headers", "deadline_s"),
    [
        # Two attempts of 3 s, and the longest wait before the retry (5 s).
        ({}, 2 * 3 + 5),
        # The client's own timeout bounds the whole walk.
        ({"x-gateway-timeout": "4"}, 4),
    ],
)
async def test_a_dead_requests_reservation_stops_counting_after_its_deadline_and_the_margin(
    personas, never_settled, settings, headers, deadline_s
):
    settings.GATEWAY_RESERVATION_MARGIN_SECONDS = 2
    await sync_to_async(set_timeouts)(personas.provider, timeout_s=3, max_retries=1)
    budget = await sync_to_async(add_budget)(personas, "tenant", max_tokens=10**6)
    before_ms = timezone.now().timestamp() * 1000

    response = await post(personas.acme.plaintext_key, chat(), **headers)

    assert response.status_code == 200
    client = governor._client()
    expiry = await client.zscore("gw:resv:expiry", response["x-request-id"])
    hold_ms = (deadline_s + 2) * 1000
    assert before_ms + hold_ms <= expiry <= timezone.now().timestamp() * 1000 + hold_ms
    reserved = (await budget_counter(budget))["rt"]
    assert reserved > 0

    async def sweep_at(ms: float) -> int:
        """Any admission releases what has expired; then what the budget still holds."""
        await governor.admit(
            request_id="req_sweeper",
            limits=[LimitRule("global:999", 10**6, None)],
            budgets=[],
            estimated_tokens=0,
            reserve_tokens=0,
            reserve_cost=Decimal(0),
            hold_seconds=1,
            now=datetime.fromtimestamp(ms / 1000, UTC),
        )
        return (await budget_counter(budget))["rt"]

    assert await sweep_at(expiry - 500) == reserved
    assert await sweep_at(expiry + 500) == 0


# --- upstreams that bill more prompt tokens than we count --------------------------------------


async def test_a_prompt_billed_above_our_count_is_reserved_as_billed_once_seen_and_overruns_counted(
    personas, gpt, fake_openai, settings, caplog
):
    settings.GATEWAY_PROMPT_ESTIMATE_MARGIN = 1.0  # trust our count until the upstream reports
    ours = count_prompt_tokens(USER, "openai")
    assert ours < PROMPT_TOKENS  # the fake bills 11 prompt tokens for what we count as 9
    budget = await sync_to_async(add_budget)(personas, "tenant", max_tokens=10**6)
    key = personas.acme.plaintext_key
    # The fake writes exactly COMPLETION_TOKENS: a cap of that leaves no slack to hide in.
    ask = {"model": "gpt", "messages": USER, "max_tokens": COMPLETION_TOKENS}

    first = await post(key, ask)
    after_first = await budget_counter(budget)
    second = await post(key, ask)
    after_second = await budget_counter(budget)

    assert (first.status_code, second.status_code) == (200, 200)
    # The first reservation held our count: the upstream billed 2 more, an overrun that
    # the budget's counters keep and the log says.
    assert (after_first["ov"], after_first["ovt"]) == (1, PROMPT_TOKENS - ours)
    assert after_first["ovc"] == cost_to_units(Decimal(PROMPT_TOKENS - ours) / 10**6)
    assert "past its reservation" in caplog.text
    # The second was reserved as the upstream bills (11 prompt tokens): no overrun.
    assert after_second["ov"] == 1
    assert after_second["st"] == 2 * (PROMPT_TOKENS + COMPLETION_TOKENS)


async def test_a_long_stream_keeps_its_reservation_past_its_first_hold(personas, settings):
    # Held at admission for the first byte (0.3 s) + one idle interval (0.3 s) + the margin
    # (0.4 s); the stream then runs well past that, one chunk every 0.2 s.
    settings.GATEWAY_RESERVATION_MARGIN_SECONDS = 0.4
    await sync_to_async(set_timeouts)(
        personas.provider, timeout_s=0.3, max_retries=0, stub_delay_ms=150
    )
    budget = await sync_to_async(add_budget)(personas, "tenant", max_tokens=10**6)
    words = [{"role": "user", "content": "one two three four five six seven eight nine ten"}]
    renewals: list[bool] = []
    original = governor.renew

    async def renew(*args: object, **kwargs: object) -> bool:
        renewals.append(await original(*args, **kwargs))
        return renewals[-1]

    governor.renew = renew
    try:
        response = await post(
            personas.acme.plaintext_key, chat(messages=words, stream=True, max_tokens=200)
        )
        held_late = first_chunk_at = None
        async for _part in response.streaming_content:
            now = asyncio.get_running_loop().time()
            first_chunk_at = first_chunk_at or now  # (admitted before it)
            if held_late is None and now - first_chunk_at > 1.2:
                # Past the first hold: a sweep by anyone else must leave it alone.
                await governor.admit(
                    request_id="req_sweeper",
                    limits=[LimitRule("global:999", 10**6, None)],
                    budgets=[],
                    estimated_tokens=0,
                    reserve_tokens=0,
                    reserve_cost=Decimal(0),
                    hold_seconds=1,
                )
                held_late = (await budget_counter(budget))["rt"]
    finally:
        del governor.renew

    assert held_late, "the stream ended before its first hold did, or lost its reservation"
    assert renewals and all(renewals)
    assert (await budget_counter(budget))["rt"] == 0  # settled at the end
