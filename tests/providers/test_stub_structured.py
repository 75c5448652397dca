"""The stub's `n`, `response_format` and forced tool calls: what structured-output and
tool-using clients need from the `make run` demo."""

from __future__ import annotations

import json

import jsonschema

from providers.stub import StubProvider
from tests.providers.support import chat, collect, target_for

stub = StubProvider()
TARGET = target_for("", "echo", kind="stub")
ANSWER_SCHEMA = {
    "type": "object",
    "properties": {
        "answer": {"type": "string"},
        "confidence": {"type": "number", "minimum": 0.2, "maximum": 1},
        "sources": {"type": "array", "items": {"$ref": "#/$defs/Source"}, "minItems": 1},
    },
    "required": ["answer", "confidence", "sources"],
    "additionalProperties": False,
    "$defs": {
        "Source": {
            "type": "object",
            "properties": {"url": {"type": "string", "format": "uri"}},
            "required": ["url"],
        }
    },
}
JSON_SCHEMA = {"type": "json_schema", "json_schema": {"name": "a", "schema": ANSWER_SCHEMA}}
LOOKUP = {
    "type": "function",
    "function": {
        "name": "lookup",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"ids": {"type": "array", "items": {"type": "integer"}, "minItems": 2}},
            "required": ["ids"],
        },
    },
}


def streamed_choices(chunks: list[dict]) -> dict[int, dict]:
    """Each choice's content, tool-call arguments and finish reason, from the chunks."""
    choices: dict[int, dict] = {}
    for chunk in chunks:
        for choice in chunk["choices"]:
            seen = choices.setdefault(choice["index"], {"content": "", "args": "", "finish": None})
            delta = choice["delta"]
            seen["content"] += delta.get("content") or ""
            for call in delta.get("tool_calls") or ():
                seen["args"] += call["function"].get("arguments") or ""
            seen["finish"] = choice["finish_reason"] or seen["finish"]
    return choices


async def test_it_answers_n_choices_indexed_from_zero_and_bills_them_all():
    one = await stub.complete(TARGET, chat("hi"), client=None)
    three = await stub.complete(TARGET, chat("hi", n=3), client=None)

    assert [c["index"] for c in three["choices"]] == [0, 1, 2]
    assert {c["message"]["content"] for c in three["choices"]} == {"[stub:echo] hi"}
    assert three["usage"]["completion_tokens"] == 3 * one["usage"]["completion_tokens"]


async def test_it_streams_n_choices_each_with_its_finish_reason():
    chunks = await collect(stub.stream(TARGET, chat("a b", n=2), client=None))

    assert streamed_choices(chunks) == {
        0: {"content": "[stub:echo] a b", "args": "", "finish": "stop"},
        1: {"content": "[stub:echo] a b", "args": "", "finish": "stop"},
    }
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] > 0


async def test_json_object_mode_answers_a_json_object():
    answer = await stub.complete(
        TARGET, chat("list three", response_format={"type": "json_object"}), client=None
    )

    content = json.loads(answer["choices"][0]["message"]["content"])
    assert content == {"stub": "echo", "echo": "list three"}


async def test_json_schema_mode_answers_content_valid_against_the_schema():
    answer = await stub.complete(TARGET, chat(response_format=JSON_SCHEMA, n=2), client=None)

    for choice in answer["choices"]:
        jsonschema.validate(json.loads(choice["message"]["content"]), ANSWER_SCHEMA)
        assert choice["finish_reason"] == "stop"


async def test_json_schema_mode_streams_the_same_content():
    whole = await stub.complete(TARGET, chat(response_format=JSON_SCHEMA), client=None)
    chunks = await collect(stub.stream(TARGET, chat(response_format=JSON_SCHEMA), client=None))

    streamed = streamed_choices(chunks)[0]["content"]
    assert streamed == whole["choices"][0]["message"]["content"]
    assert len(chunks) > 4  # in pieces, as a model streams it


async def test_a_required_tool_call_has_arguments_valid_against_the_parameters():
    messages = [
        {"role": "user", "content": "look up"},
        {"role": "tool", "tool_call_id": "call_1", "content": "done"},
    ]
    body = chat(messages=messages, tools=[LOOKUP], tool_choice="required", n=2)

    answer = await stub.complete(TARGET, body, client=None)

    calls = [c["message"]["tool_calls"][0] for c in answer["choices"]]
    assert len({call["id"] for call in calls}) == 2
    for call in calls:
        arguments = json.loads(call["function"]["arguments"])
        jsonschema.validate(arguments, LOOKUP["function"]["parameters"])
    assert answer["choices"][1]["finish_reason"] == "tool_calls"


async def test_a_streamed_tool_call_carries_the_same_arguments():
    body = chat(tools=[LOOKUP], tool_choice={"type": "function", "function": {"name": "lookup"}})

    chunks = await collect(stub.stream(TARGET, body, client=None))

    choice = streamed_choices(chunks)[0]
    assert json.loads(choice["args"]) == {"ids": [0, 0]}
    assert choice["finish"] == "tool_calls"
