"""`/v1/messages` to an Anthropic target passes through untranslated (anthropic_native.py):
the client's body reaches the fake Anthropic upstream as sent (model replaced, hints out),
its answer reaches the client as the upstream sent it, JSON and events; usage still lands
in the audit row and the ledger; fallback to an OpenAI target still translates."""

from __future__ import annotations

import httpx
import orjson
import pytest
from asgiref.sync import sync_to_async

from billing.models import UsageLine
from providers.models import Provider, ProviderModel
from tests import factories
from tests.fakes.upstreams import (
    ANTHROPIC_GREETING,
    CACHE_CREATION_TOKENS,
    CACHE_INPUT_TOKENS,
    CACHE_READ_TOKENS,
    COMPLETION_TOKENS,
    OPENAI_GREETING,
)
from tests.routing.proxy.test_messages import HELLO, audit_rows, events, post

pytestmark = pytest.mark.django_db(transaction=True)

EXTRAS = {
    "top_k": 5,
    "thinking": {"type": "enabled", "budget_tokens": 1024},
    "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
    "stop_sequences": ["END"],
    "metadata": {"user_id": "u-1"},
}


@pytest.fixture
def routes(personas, fake_anthropic, fake_openai):
    """acme's `claude` (model `ok`), `claude-cache` (`cache`) and `claude-then-gpt` (an
    overloaded Anthropic target, then OpenAI's `ok`)."""
    anthropic = factories.make_provider(
        "fake-anthropic",
        kind="anthropic",
        base_url=fake_anthropic.anthropic_base_url,
        timeout_s=5,
        max_retries=0,
    )
    openai = factories.make_provider(
        "fake-openai", kind="openai", base_url=fake_openai.openai_base_url, timeout_s=5
    )
    acme = personas.acme.tenant
    factories.make_route("claude", factories.make_model(anthropic, "ok"), tenant=acme)
    factories.make_route("claude-cache", factories.make_model(anthropic, "cache"), tenant=acme)
    factories.make_route(
        "claude-then-gpt",
        factories.make_model(anthropic, "fail-529"),
        factories.make_model(openai, "ok"),
        tenant=acme,
    )
    return personas


def upstream_again(fake, body: dict) -> bytes:
    """What the fake upstream answers to `body` when asked directly."""
    return httpx.post(f"{fake.anthropic_base_url}/v1/messages", json=body, timeout=5).content


async def test_the_body_reaches_the_upstream_unchanged(routes, fake_anthropic):
    body = {"model": "claude", "max_tokens": 50, "messages": HELLO, **EXTRAS}
    response = await post(routes.acme.plaintext_key, {**body, "x-gateway": {"cache": False}})
    assert response.status_code == 200, response.content
    path, _headers, sent = fake_anthropic.last
    assert path == "/v1/messages"
    assert sent == {**body, "model": "ok"}  # the hints out, nothing translated
    # The answer is the upstream's, byte for byte.
    assert response.content == await sync_to_async(upstream_again)(fake_anthropic, sent)
    [row] = await audit_rows()
    assert (row.outcome, row.provider, row.metadata["endpoint"]) == (
        "success",
        "fake-anthropic",
        "messages",
    )


async def test_usage_with_cache_reads_lands_in_the_row_and_the_ledger(routes):
    response = await post(
        routes.acme.plaintext_key, {"model": "claude-cache", "max_tokens": 50, "messages": HELLO}
    )
    usage = orjson.loads(response.content)["usage"]
    assert usage["cache_read_input_tokens"] == CACHE_READ_TOKENS  # Anthropic's own shape
    [row] = await audit_rows()
    prompt = CACHE_INPUT_TOKENS + CACHE_READ_TOKENS + CACHE_CREATION_TOKENS
    assert (row.prompt_tokens, row.completion_tokens) == (prompt, COMPLETION_TOKENS)
    assert row.cached_tokens == CACHE_READ_TOKENS
    line = await sync_to_async(UsageLine.objects.get)(request_id=row.request_id)
    assert (line.prompt_tokens, line.cached_tokens) == (prompt, CACHE_READ_TOKENS)
    assert line.cost_usd == row.cost_usd > 0


async def test_a_stream_is_relayed_event_for_event(routes, fake_anthropic):
    body = {"model": "claude-cache", "max_tokens": 50, "messages": HELLO, "stream": True, **EXTRAS}
    response = await post(routes.acme.plaintext_key, body)
    assert response.status_code == 200
    content = b"".join([part async for part in response.streaming_content])
    sent = fake_anthropic.last.body
    assert sent == {**body, "model": "cache"}
    assert content == await sync_to_async(upstream_again)(fake_anthropic, sent)
    names = [name for name, _ in events(content)]
    assert names[:2] == ["message_start", "ping"] and names[-1] == "message_stop"
    assert names.count("message_delta") == 2  # both of the upstream's, as it sent them
    [row] = await audit_rows()
    assert (row.outcome, row.stream) == ("success", True)
    assert (row.completion_tokens, row.cached_tokens) == (COMPLETION_TOKENS, CACHE_READ_TOKENS)
    assert row.response.startswith(ANTHROPIC_GREETING)
    line = await sync_to_async(UsageLine.objects.get)(request_id=row.request_id)
    assert line.completion_tokens == COMPLETION_TOKENS


@pytest.mark.parametrize("stream", [False, True])
async def test_a_failing_anthropic_target_falls_back_to_openai(routes, stream):
    body = {"model": "claude-then-gpt", "max_tokens": 50, "messages": HELLO, "top_k": 5}
    response = await post(routes.acme.plaintext_key, {**body, "stream": stream})
    assert response.status_code == 200, response.content
    assert response["x-gateway-fallback"] == "true"
    if stream:
        sent = events(b"".join([part async for part in response.streaming_content]))
        text = "".join(p["delta"]["text"] for n, p in sent if n == "content_block_delta")
    else:
        text = orjson.loads(response.content)["content"][0]["text"]
    assert text.startswith(OPENAI_GREETING)  # translated back from OpenAI's answer
    [row] = await audit_rows()
    assert (row.outcome, row.provider, row.fallback_used) == ("success", "fake-openai", True)


@pytest.mark.parametrize("model", ["error-at-start", "midstream-drop"])
async def test_a_stream_failing_before_content_falls_back(routes, fake_anthropic, model):
    """The events before the first content are held back: an upstream that fails there
    has sent the client nothing, and the next target answers."""

    def make():
        provider = Provider.objects.get(name="fake-anthropic")
        openai = Provider.objects.get(name="fake-openai")
        factories.make_route(
            "flaky",
            factories.make_model(provider, model),
            ProviderModel.objects.get(provider=openai, name="ok"),
            tenant=routes.acme.tenant,
        )

    await sync_to_async(make)()
    body = {"model": "flaky", "max_tokens": 50, "messages": HELLO, "stream": True}
    response = await post(routes.acme.plaintext_key, body)
    sent = events(b"".join([part async for part in response.streaming_content]))
    if model == "error-at-start":
        assert response["x-gateway-fallback"] == "true"
        assert sent[-1][0] == "message_stop"
        assert [n for n, _ in sent].count("message_start") == 1
    else:  # content had started: an error event, as on the translated path
        assert sent[-1][0] == "error"
