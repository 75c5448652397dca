"""The output cap sent upstream (injected from a budget or the route's default, what a
partly used budget still affords, streams cut at the budget) through the proxy, in-process
(ASGI handler, real database, Redis or the in-process fakeredis for the counters)."""

from __future__ import annotations

import orjson
import pytest
from asgiref.sync import sync_to_async

from tests.conftest import assert_envelope
from tests.fakes.upstreams import PROMPT_TOKENS
from tests.personas import Personas
from tests.routing.proxy.admission.support import (
    USER,
    add_budget,
    audit_row,
    post,
    stream_events,
)

pytestmark = pytest.mark.django_db(transaction=True)


# --- the output cap sent upstream --------------------------------------------------------------


def set_route_default(route, value: int | None) -> None:
    route.default_max_tokens = value
    route.save()


async def test_a_budget_injects_an_output_cap_when_the_client_set_none(
    personas, gpt, fake_openai, settings
):
    settings.GATEWAY_DEFAULT_MAX_OUTPUT_TOKENS = 321
    await sync_to_async(add_budget)(personas, "tenant", max_tokens=10**9)
    key = personas.acme.plaintext_key

    uncapped = await post(key, {"model": "gpt", "messages": USER})
    sent_uncapped = fake_openai.requests[-1].body
    capped = await post(key, {"model": "gpt", "messages": USER, "max_tokens": 20})
    sent_capped = fake_openai.requests[-1].body

    assert (uncapped.status_code, capped.status_code) == (200, 200)
    assert sent_uncapped["max_completion_tokens"] == 321
    assert sent_capped["max_tokens"] == 20
    assert "max_completion_tokens" not in sent_capped


async def test_the_routes_default_cap_is_the_one_injected(personas, gpt, fake_openai):
    await sync_to_async(set_route_default)(gpt, 77)
    await sync_to_async(add_budget)(personas, "key", max_tokens=10**9)

    response = await post(personas.acme.plaintext_key, {"model": "gpt", "messages": USER})

    assert response.status_code == 200
    assert fake_openai.requests[-1].body["max_completion_tokens"] == 77


async def test_without_a_budget_or_a_default_nothing_is_injected(personas, gpt, fake_openai):
    response = await post(personas.acme.plaintext_key, {"model": "gpt", "messages": USER})

    assert response.status_code == 200
    sent = fake_openai.requests[-1].body
    assert "max_completion_tokens" not in sent and "max_tokens" not in sent


async def test_a_stream_that_ignores_the_cap_is_cut_at_the_budget(personas, gpt, fake_openai):
    await sync_to_async(set_route_default)(gpt, 1)
    await sync_to_async(add_budget)(personas, "tenant", max_tokens=10**9)

    response = await post(
        personas.acme.plaintext_key, {"model": "gpt", "messages": USER, "stream": True}
    )

    assert response.status_code == 200
    events = await stream_events(response)
    assert fake_openai.requests[-1].body["max_completion_tokens"] == 1
    assert b"[DONE]" not in events
    error = orjson.loads(events[-1])["error"]
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    text = "".join(
        choice["delta"].get("content") or ""
        for event in events[:-1]
        for choice in orjson.loads(event)["choices"]
    )
    assert len(text) <= 1 * 4 + 16  # the cap, at about four characters a token
    row = await audit_row(response)
    assert (row.outcome, row.status_code) == ("rejected", 429)
    assert row.metadata["stopped_at_budget"] is True


async def test_a_soft_budget_never_cuts_a_stream(personas, gpt, fake_openai):
    await sync_to_async(set_route_default)(gpt, 1)
    await sync_to_async(add_budget)(personas, "tenant", max_tokens=10**9, hard=False)

    response = await post(
        personas.acme.plaintext_key, {"model": "gpt", "messages": USER, "stream": True}
    )

    events = await stream_events(response)
    assert events[-1] == b"[DONE]"
    assert (await audit_row(response)).outcome == "success"


# --- what a partly used budget still affords ---------------------------------------------------


async def spend_some(personas: Personas, budget_tokens: int) -> int:
    """A tenant budget of `budget_tokens`, a little of it spent by one capped request (which
    also shows the gateway what the fake upstream bills); returns the tokens spent."""
    await sync_to_async(add_budget)(personas, "tenant", max_tokens=budget_tokens)
    first = await post(
        personas.acme.plaintext_key, {"model": "gpt", "messages": USER, "max_tokens": 20}
    )
    assert first.status_code == 200
    return orjson.loads(first.content)["usage"]["total_tokens"]


async def test_a_request_without_max_tokens_is_capped_to_what_a_partly_used_budget_affords(
    personas, gpt, fake_openai
):
    spent = await spend_some(personas, 400)  # 18 of 400 tokens: the default 4096 cannot fit

    response = await post(personas.acme.plaintext_key, {"model": "gpt", "messages": USER})

    assert response.status_code == 200, response.content
    # What is left, less the prompt as the upstream bills it (11 tokens, learnt from the
    # first request), is what the upstream is told it may write.
    affordable = 400 - spent - PROMPT_TOKENS
    assert fake_openai.requests[-1].body["max_completion_tokens"] == affordable
    assert response["x-gateway-max-tokens"] == str(affordable)


async def test_a_request_whose_max_tokens_does_not_fit_what_is_left_is_told_to_lower_it(
    personas, gpt, fake_openai
):
    spent = await spend_some(personas, 400)

    response = await post(
        personas.acme.plaintext_key, {"model": "gpt", "messages": USER, "max_tokens": 500}
    )

    error = assert_envelope(response, 429, "insufficient_quota", "insufficient_quota")
    assert "exhausted" not in error["message"]
    assert "max_tokens=500" in error["message"]
    assert "total tokens budget of this tenant" in error["message"]
    assert f"At most {400 - spent - PROMPT_TOKENS} output tokens fit now." in error["message"]


async def test_a_budget_too_low_for_the_minimum_output_says_so_rather_than_exhausted(
    personas, gpt, fake_openai, settings
):
    settings.GATEWAY_BUDGET_MIN_OUTPUT_TOKENS = 64
    spent = await spend_some(personas, 18 + PROMPT_TOKENS + 63)  # 63 output tokens left
    assert spent == 18

    response = await post(personas.acme.plaintext_key, {"model": "gpt", "messages": USER})

    error = assert_envelope(response, 429, "insufficient_quota", "insufficient_quota")
    assert "fewer than 64 output tokens" in error["message"]
    assert "At most 63 output tokens fit now." in error["message"]
    assert "exhausted" not in error["message"]
