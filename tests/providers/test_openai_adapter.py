"""The OpenAI and Azure adapters against the fake OpenAI server, over real HTTP (how they
fail, beside the Anthropic adapter: test_adapter_errors.py)."""

from __future__ import annotations

import httpx

from providers.aiohttp_transport import new_upstream_client
from providers.calls import parse_retry_after
from providers.openai import AZURE_DEFAULT_API_VERSION, AzureOpenAIProvider, OpenAIProvider
from tests.fakes.upstreams import (
    COMPLETION_TOKENS,
    CREATED,
    PROMPT_TOKENS,
    TOOL_INPUT,
)
from tests.providers.support import chat, collect, target_for

openai = OpenAIProvider()
azure = AzureOpenAIProvider()
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


async def test_it_returns_the_upstream_completion_unchanged(fake_openai, http_client):
    answer = await openai.complete(target_for(fake_openai.base_url, "ok"), chat("hi"), http_client)

    assert answer["id"] == "chatcmpl-fake"
    assert answer["created"] == CREATED
    assert answer["system_fingerprint"] == "fp_fake"
    assert answer["choices"][0]["message"]["content"] == "fake-openai says: hi"
    assert answer["usage"] == {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


async def test_it_posts_to_chat_completions_with_the_bearer_key(
    fake_openai, http_client, monkeypatch
):
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-upstream")
    target = target_for(fake_openai.base_url, "ok", api_key_env="FAKE_OPENAI_KEY")

    await openai.complete(target, chat(), http_client)

    path, headers, _ = fake_openai.last
    assert path == "/chat/completions"
    assert headers["authorization"] == "Bearer sk-upstream"


async def test_it_sends_no_authorization_when_the_key_variable_is_unset(
    fake_openai, http_client, monkeypatch
):
    monkeypatch.delenv("FAKE_OPENAI_KEY", raising=False)
    target = target_for(fake_openai.base_url, "ok", api_key_env="FAKE_OPENAI_KEY")

    await openai.complete(target, chat(), http_client)

    assert "authorization" not in fake_openai.last[1]


async def test_it_passes_unknown_fields_through_and_sets_the_upstream_model(
    fake_openai, http_client
):
    body = chat(seed=7, logprobs=True, some_future_field={"a": [1]}, tools=[WEATHER_TOOL])

    await openai.complete(target_for(fake_openai.base_url, "ok"), body, http_client)

    sent = fake_openai.last[2]
    assert sent == {**body, "model": "ok"}


async def test_it_drops_stream_options_from_a_call_that_is_not_streamed(fake_openai, http_client):
    body = chat(stream=True, stream_options={"include_usage": True})

    await openai.complete(target_for(fake_openai.base_url, "ok"), body, http_client)

    assert "stream" not in fake_openai.last[2]
    assert "stream_options" not in fake_openai.last[2]


async def test_it_streams_chunks_with_one_id_and_created_and_role_first(fake_openai, http_client):
    chunks = await collect(
        openai.stream(target_for(fake_openai.base_url, "ok"), chat("hi"), http_client)
    )

    assert {(c["id"], c["created"]) for c in chunks} == {("chatcmpl-fake", CREATED)}
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == "fake-openai says: hi"
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["total_tokens"] == PROMPT_TOKENS + COMPLETION_TOKENS


async def test_it_forces_include_usage_and_keeps_other_stream_options(fake_openai, http_client):
    body = chat(stream_options={"include_usage": False, "include_obfuscation": False})

    await collect(openai.stream(target_for(fake_openai.base_url, "ok"), body, http_client))

    sent = fake_openai.last[2]
    assert sent["stream"] is True
    assert sent["stream_options"] == {"include_usage": True, "include_obfuscation": False}
    assert body["stream_options"]["include_usage"] is False  # the caller's dict is untouched


async def test_it_streams_tool_call_fragments_as_they_come(fake_openai, http_client):
    body = chat(tools=[WEATHER_TOOL])

    chunks = await collect(
        openai.stream(target_for(fake_openai.base_url, "tools"), body, http_client)
    )

    calls = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert calls[0]["id"] == "call_fake0"
    assert calls[0]["function"]["name"] == "get_weather"
    assert "".join(c["function"]["arguments"] for c in calls) == '{"location":"Paris"}'
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert TOOL_INPUT == {"location": "Paris"}


async def test_azure_posts_to_the_deployment_with_the_api_key_header(
    fake_openai, http_client, monkeypatch
):
    monkeypatch.setenv("FAKE_AZURE_KEY", "azure-secret")
    target = target_for(
        fake_openai.base_url, "ok", kind="azure_openai", api_key_env="FAKE_AZURE_KEY"
    )

    answer = await azure.complete(target, chat(), http_client)

    path, headers, _ = fake_openai.last
    assert (
        path == f"/openai/deployments/ok/chat/completions?api-version={AZURE_DEFAULT_API_VERSION}"
    )
    assert headers["api-key"] == "azure-secret"
    assert "authorization" not in headers
    assert answer["choices"][0]["finish_reason"] == "stop"


async def test_azure_uses_the_configured_api_version(fake_openai, http_client):
    target = target_for(
        fake_openai.base_url, "ok", kind="azure_openai", api_version="2025-01-01-preview"
    )

    await collect(azure.stream(target, chat(), http_client))

    assert fake_openai.last[0].endswith("?api-version=2025-01-01-preview")


async def test_closing_a_stream_early_releases_the_connection(fake_openai):
    target = target_for(fake_openai.base_url, "ok", connect_timeout_s=0.5)
    async with new_upstream_client(max_connections=1, trust_env=False) as one:
        stream = openai.stream(target, chat(), one)
        await anext(stream)
        await stream.aclose()

        # With a single pooled connection this would hit the pool timeout if it leaked.
        answer = await openai.complete(target, chat(), one)

    assert answer["id"] == "chatcmpl-fake"


def test_retry_after_prefers_milliseconds():
    headers = httpx.Headers({"retry-after-ms": "1500", "retry-after": "9"})

    assert parse_retry_after(headers) == 1.5


def test_retry_after_reads_seconds_and_http_dates():
    assert parse_retry_after(httpx.Headers({"retry-after": "3"})) == 3.0
    assert parse_retry_after(httpx.Headers({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert parse_retry_after(httpx.Headers()) is None
