"""The offline stub provider and the token estimate it bills with."""

from __future__ import annotations

import time

import orjson

from providers.stub import StubProvider
from providers.tokens import estimate_prompt_tokens, estimate_tokens
from tests.providers.support import chat, collect, target_for

stub = StubProvider()
WEATHER = {
    "type": "function",
    "function": {
        "name": "weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"enum": ["celsius", "fahrenheit"]},
                "days": {"type": ["integer", "null"]},
                "where": {
                    "type": "object",
                    "properties": {"lat": {"type": "number"}},
                    "required": ["lat"],
                },
                "optional": {"type": "string"},
            },
            "required": ["city", "unit", "days", "where"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "clock"}}


def stub_target(model: str = "echo", **kwargs: object):
    return target_for("", model, kind="stub", **kwargs)


async def test_it_echoes_the_last_user_message_deterministically():
    body = chat(
        messages=[
            {"role": "user", "content": "first"},
            {"role": "user", "content": "Hello   stub\nworld"},
        ]
    )

    one = await stub.complete(stub_target(), body, client=None)
    two = await stub.complete(stub_target(), body, client=None)

    assert one["choices"][0]["message"]["content"] == "[stub:echo] Hello stub world"
    assert one["choices"][0]["message"] == two["choices"][0]["message"]
    assert one["usage"] == two["usage"]
    assert one["model"] == "echo"
    assert one["choices"][0]["finish_reason"] == "stop"


async def test_it_keeps_the_echo_short():
    answer = await stub.complete(
        stub_target(), chat(" ".join(f"w{i}" for i in range(50))), client=None
    )

    assert (
        answer["choices"][0]["message"]["content"]
        == "[stub:echo] w0 w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 …"
    )


async def test_it_bills_the_token_estimate():
    body = chat("hello there")

    answer = await stub.complete(stub_target(), body, client=None)

    content = answer["choices"][0]["message"]["content"]
    assert answer["usage"] == {
        "prompt_tokens": estimate_prompt_tokens(body["messages"]),
        "completion_tokens": estimate_tokens(content),
        "total_tokens": estimate_prompt_tokens(body["messages"]) + estimate_tokens(content),
    }


async def test_it_streams_words_then_finish_then_usage_under_one_id():
    chunks = await collect(stub.stream(stub_target(), chat("a b c"), client=None))

    assert len({(c["id"], c["created"]) for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    words = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert words == ["[stub:echo] ", "a ", "b ", "c"]
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == estimate_tokens("[stub:echo] a b c")


async def test_it_calls_the_first_tool_with_placeholder_arguments():
    answer = await stub.complete(
        stub_target(), chat("weather?", tools=[WEATHER, CLOCK]), client=None
    )

    choice = answer["choices"][0]
    call = choice["message"]["tool_calls"][0]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] is None
    assert call["type"] == "function"
    assert call["id"].startswith("call_stub")
    assert call["function"]["name"] == "weather"
    assert orjson.loads(call["function"]["arguments"]) == {
        "city": "stub",
        "unit": "celsius",
        "days": 0,
        "where": {"lat": 0},
    }


async def test_it_calls_the_named_tool():
    body = chat(
        tools=[WEATHER, CLOCK], tool_choice={"type": "function", "function": {"name": "clock"}}
    )

    answer = await stub.complete(stub_target(), body, client=None)

    assert answer["choices"][0]["message"]["tool_calls"][0]["function"] == {
        "name": "clock",
        "arguments": "{}",
    }


async def test_it_answers_in_text_when_tool_choice_is_none():
    answer = await stub.complete(
        stub_target(), chat("hi", tools=[WEATHER], tool_choice="none"), client=None
    )

    assert answer["choices"][0]["finish_reason"] == "stop"


async def test_it_answers_in_text_after_a_tool_result_so_tool_loops_end():
    call = {"id": "call_1", "type": "function", "function": {"name": "clock", "arguments": "{}"}}
    messages = [
        {"role": "user", "content": "time?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_1", "content": "noon"},
    ]

    answer = await stub.complete(stub_target(), chat(messages=messages, tools=[CLOCK]), client=None)

    assert answer["choices"][0]["message"]["content"] == "[stub:echo] time?"


async def test_it_streams_a_tool_call():
    chunks = await collect(stub.stream(stub_target(), chat(tools=[CLOCK]), client=None))

    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    assert first["tool_calls"][0]["function"] == {"name": "clock", "arguments": ""}
    assert first["tool_calls"][0]["index"] == 0
    assert chunks[1]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert chunks[-2]["choices"][0]["finish_reason"] == "tool_calls"
    assert chunks[-1]["usage"]["completion_tokens"] >= 1


async def test_it_waits_the_configured_delay():
    started = time.monotonic()

    await stub.complete(stub_target(stub_delay_ms=50), chat(), client=None)

    assert time.monotonic() - started >= 0.05


def test_the_token_estimate_is_about_four_characters_and_never_zero():
    assert estimate_tokens("") == 1
    assert estimate_tokens("abcd") == 1
    assert estimate_tokens("abcde") == 2
    assert estimate_tokens("x" * 400) == 100


def test_the_prompt_estimate_counts_parts_tool_calls_and_framing():
    call = {"function": {"name": "f", "arguments": '{"a": 1}'}}
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "x" * 8}, {"type": "image_url"}]},
        {"role": "assistant", "content": None, "tool_calls": [call]},
    ]

    assert estimate_prompt_tokens(messages) == 3 + (4 + 2 + 85) + (4 + 1 + 2)
    assert estimate_prompt_tokens([]) == 3
