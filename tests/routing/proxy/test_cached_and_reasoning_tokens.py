"""Cached-input and reasoning tokens an upstream reports reach the audit row, and cached
input is priced at the cached price of the version in force."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async

from billing.models import PriceVersion
from billing.services import price_version_create
from tests import factories
from tests.fakes.openai_upstream import CACHED_TOKENS, REASONING_TOKENS
from tests.fakes.upstreams import COMPLETION_TOKENS, PROMPT_TOKENS
from tests.routing.proxy.test_handler import USER, audit_rows, post

pytestmark = pytest.mark.django_db(transaction=True)


def _cached_route(personas, fake_openai, cached_price: Decimal | None) -> PriceVersion:
    provider = factories.make_provider(
        "fake-openai", kind="openai", base_url=fake_openai.openai_base_url, timeout_s=5
    )
    model = factories.make_model(provider, "cached", input_per_million="4", output_per_million="8")
    factories.make_route("cache-route", model, tenant=personas.acme.tenant)
    return price_version_create(
        provider_model=model,
        input_per_million=Decimal(4),
        output_per_million=Decimal(8),
        cached_input_per_million=cached_price,
    )


@pytest.mark.parametrize("stream", [False, True])
async def test_cached_and_reasoning_tokens_are_recorded_and_priced(personas, fake_openai, stream):
    version = await sync_to_async(_cached_route)(personas, fake_openai, Decimal(1))
    body = {"model": "cache-route", "messages": USER, "stream": stream}
    response = await post(personas.acme.plaintext_key, body)
    assert response.status_code == 200
    if stream:
        _ = [part async for part in response.streaming_content]
    [row] = await audit_rows()
    assert (row.prompt_tokens, row.completion_tokens) == (PROMPT_TOKENS, COMPLETION_TOKENS)
    assert (row.cached_tokens, row.reasoning_tokens) == (CACHED_TOKENS, REASONING_TOKENS)
    assert row.price_version_id == version.id
    expected = (
        (PROMPT_TOKENS - CACHED_TOKENS) * Decimal(4)
        + CACHED_TOKENS * Decimal(1)
        + COMPLETION_TOKENS * Decimal(8)
    ) / 1_000_000
    assert row.cost_usd == expected


async def test_without_a_cached_price_cached_input_costs_the_input_price(personas, fake_openai):
    await sync_to_async(_cached_route)(personas, fake_openai, None)
    response = await post(personas.acme.plaintext_key, {"model": "cache-route", "messages": USER})
    assert response.status_code == 200
    [row] = await audit_rows()
    assert row.cached_tokens == CACHED_TOKENS
    assert row.cost_usd == (PROMPT_TOKENS * Decimal(4) + COMPLETION_TOKENS * Decimal(8)) / 10**6


async def test_absurd_details_are_clamped_and_kept(personas, fake_openai):
    from routing.proxy.exchange import MAX_REPORTED_TOKENS, Exchange, usage_from

    exchange = Exchange(request=None)
    usage_from(
        exchange,
        {
            "prompt_tokens": 3,
            "completion_tokens": 2,
            "prompt_tokens_details": {"cached_tokens": -4},
            "completion_tokens_details": {"reasoning_tokens": 2**40},
        },
    )
    assert (exchange.cached_tokens, exchange.reasoning_tokens) == (0, MAX_REPORTED_TOKENS)
    assert set(exchange.metadata["usage_reported_out_of_range"]) == {
        "cached_tokens",
        "reasoning_tokens",
    }


def test_anthropic_cache_reads_are_cached_tokens():
    from providers.anthropic.convert import usage
    from routing.proxy.exchange import Exchange, usage_from

    exchange = Exchange(request=None)
    usage_from(
        exchange, usage({"input_tokens": 3, "cache_read_input_tokens": 10, "output_tokens": 2})
    )
    assert (exchange.prompt_tokens, exchange.cached_tokens) == (13, 10)
