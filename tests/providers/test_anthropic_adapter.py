"""The Anthropic adapter against the fake Messages API, over real HTTP (how it fails,
beside the OpenAI adapter: test_adapter_errors.py)."""

from __future__ import annotations

import orjson
import pytest

from providers.anthropic import AnthropicProvider, TranslationError
from providers.anthropic.adapter import ANTHROPIC_VERSION
from tests.fakes.upstreams import (
    CACHE_CREATION_TOKENS,
    CACHE_INPUT_TOKENS,
    CACHE_READ_TOKENS,
    COMPLETION_TOKENS,
    PROMPT_TOKENS,
    TOOL_INPUT,
)
from tests.providers.support import chat, collect, target_for

anthropic = AnthropicProvider()
TOOLS = [
    {"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}},
    {"type": "function", "function": {"name": "clock", "parameters": {"type": "object"}}},
]


def target(base_url: str, model: str, **kwargs: object):
    return target_for(base_url, model, kind="anthropic", **kwargs)


def deltas(chunks: list[dict]) -> list[dict]:
    return [c["choices"][0]["delta"] for c in chunks if c["choices"]]


async def test_it_posts_the_translated_request_with_anthropic_headers(
    fake_anthropic, http_client, monkeypatch
):
    monkeypatch.setenv("FAKE_ANTHROPIC_KEY", "sk-ant")
    body = chat(
        "hi",
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}],
    )

    await anthropic.complete(
        target(fake_anthropic.base_url, "ok", api_key_env="FAKE_ANTHROPIC_KEY"), body, http_client
    )

    path, headers, sent = fake_anthropic.last
    assert path == "/v1/messages"
    assert headers["x-api-key"] == "sk-ant"
    assert headers["anthropic-version"] == ANTHROPIC_VERSION
    assert sent == {
        "model": "ok",
        "max_tokens": 4096,  # ANTHROPIC_DEFAULT_MAX_TOKENS
        "system": "Be brief.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
    }


async def test_it_answers_a_chat_completion(fake_anthropic, http_client):
    answer = await anthropic.complete(
        target(fake_anthropic.base_url, "ok"), chat("hi"), http_client
    )

    assert answer["id"] == "chatcmpl-msg_fake"
    assert answer["object"] == "chat.completion"
    assert isinstance(answer["created"], int)
    assert answer["model"] == "ok"
    assert answer["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "fake-anthropic says: hi", "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert answer["usage"]["prompt_tokens"] == PROMPT_TOKENS
    assert answer["usage"]["completion_tokens"] == COMPLETION_TOKENS
    assert answer["usage"]["total_tokens"] == PROMPT_TOKENS + COMPLETION_TOKENS


async def test_it_counts_cache_tokens_as_prompt_tokens(fake_anthropic, http_client):
    answer = await anthropic.complete(target(fake_anthropic.base_url, "cache"), chat(), http_client)

    prompt = CACHE_INPUT_TOKENS + CACHE_READ_TOKENS + CACHE_CREATION_TOKENS
    assert answer["usage"]["prompt_tokens"] == prompt
    assert answer["usage"]["total_tokens"] == prompt + COMPLETION_TOKENS
    assert answer["usage"]["prompt_tokens_details"] == {"cached_tokens": CACHE_READ_TOKENS}


STOP_REASONS = [
    ("ok", "stop"),
    ("stop-stop_sequence", "stop"),
    ("stop-max_tokens", "length"),
    ("stop-refusal", "content_filter"),
]


@pytest.mark.parametrize(("model", "finish_reason"), STOP_REASONS)
async def test_it_maps_stop_reasons(fake_anthropic, http_client, model, finish_reason):
    answer = await anthropic.complete(target(fake_anthropic.base_url, model), chat(), http_client)

    assert answer["choices"][0]["finish_reason"] == finish_reason


@pytest.mark.parametrize(("model", "finish_reason"), STOP_REASONS)
async def test_it_maps_stop_reasons_when_streaming(
    fake_anthropic, http_client, model, finish_reason
):
    chunks = await collect(
        anthropic.stream(target(fake_anthropic.base_url, model), chat(), http_client)
    )

    assert chunks[-2]["choices"][0]["finish_reason"] == finish_reason


async def test_it_streams_openai_chunks_in_order(fake_anthropic, http_client):
    chunks = await collect(
        anthropic.stream(target(fake_anthropic.base_url, "ok"), chat("hi"), http_client)
    )

    assert {(c["id"], c["created"], c["object"]) for c in chunks} == {
        ("chatcmpl-msg_fake", chunks[0]["created"], "chat.completion.chunk")
    }
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert all("role" not in d for d in deltas(chunks)[1:])
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == "fake-anthropic says: hi"
    assert chunks[-2]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
    }
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-2])
    assert fake_anthropic.last[2]["stream"] is True


async def test_it_ends_the_stream_with_the_last_cumulative_usage(fake_anthropic, http_client):
    chunks = await collect(
        anthropic.stream(target(fake_anthropic.base_url, "ok"), chat(), http_client)
    )

    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["prompt_tokens"] == PROMPT_TOKENS
    assert (
        chunks[-1]["usage"]["completion_tokens"] == COMPLETION_TOKENS
    )  # not the sum of both deltas


async def test_it_streams_cache_tokens_into_prompt_tokens(fake_anthropic, http_client):
    chunks = await collect(
        anthropic.stream(target(fake_anthropic.base_url, "cache"), chat(), http_client)
    )

    assert (
        chunks[-1]["usage"]["prompt_tokens"]
        == CACHE_INPUT_TOKENS + CACHE_READ_TOKENS + CACHE_CREATION_TOKENS
    )


async def test_it_sends_tools_and_tool_history_in_anthropic_format(fake_anthropic, http_client):
    call = {
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
    }
    body = chat(
        messages=[
            {"role": "user", "content": "weather?"},
            {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "toolu_1", "content": "cold"},
        ],
        tools=TOOLS,
        tool_choice="required",
        parallel_tool_calls=False,
    )

    answer = await anthropic.complete(target(fake_anthropic.base_url, "tools"), body, http_client)

    sent = fake_anthropic.last[2]
    assert sent["tools"][0] == {"name": "weather", "input_schema": {"type": "object"}}
    assert sent["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert sent["messages"][1]["content"] == [
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}}
    ]
    assert sent["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "cold"}],
    }
    assert answer["choices"][0]["message"]["content"] == "fake-anthropic says: cold"


async def test_it_answers_tool_use_as_tool_calls(fake_anthropic, http_client):
    answer = await anthropic.complete(
        target(fake_anthropic.base_url, "tools"), chat(tools=TOOLS), http_client
    )

    choice = answer["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    assert choice["message"]["tool_calls"] == [
        {
            "id": f"toolu_fake{i}",
            "type": "function",
            "function": {"name": name, "arguments": '{"location":"Paris"}'},
        }
        for i, name in enumerate(["weather", "clock"])
    ]


async def test_it_streams_tool_use_as_indexed_tool_call_deltas(fake_anthropic, http_client):
    chunks = await collect(
        anthropic.stream(target(fake_anthropic.base_url, "tools"), chat(tools=TOOLS), http_client)
    )

    calls = [tc for d in deltas(chunks) for tc in d.get("tool_calls", ())]
    openings = [c for c in calls if "id" in c]
    assert openings == [
        {
            "index": i,
            "id": f"toolu_fake{i}",
            "type": "function",
            "function": {"name": name, "arguments": ""},
        }
        for i, name in enumerate(["weather", "clock"])
    ]
    for index in (0, 1):
        arguments = "".join(c["function"]["arguments"] for c in calls if c["index"] == index)
        assert orjson.loads(arguments) == TOOL_INPUT
    assert deltas(chunks)[0]["role"] == "assistant"
    assert "".join(d.get("content") or "" for d in deltas(chunks)) == "Let me check."
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"


async def test_invalid_tool_call_arguments_fail_before_any_request(fake_anthropic, http_client):
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    body = chat(
        messages=[{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [call]}]
    )
    fake_anthropic.clear()

    with pytest.raises(TranslationError):
        await anthropic.complete(target(fake_anthropic.base_url, "ok"), body, http_client)
    with pytest.raises(TranslationError):
        await anext(anthropic.stream(target(fake_anthropic.base_url, "ok"), body, http_client))

    assert fake_anthropic.requests == []
