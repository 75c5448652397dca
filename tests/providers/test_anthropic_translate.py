"""The OpenAI -> Anthropic request translation, rule by rule (CONTRACT.md), without I/O."""

from __future__ import annotations

import pytest

from providers.anthropic import TranslationError, to_messages_request
from providers.base import UpstreamError

PNG = "iVBORw0KGgo="


def translate(messages: list, **fields: object) -> dict:
    body = {"model": "alias", "messages": messages, **fields}
    return to_messages_request(body, model="claude-test", default_max_tokens=1024)


def user(text: str) -> dict:
    return {"role": "user", "content": text}


def test_it_uses_the_upstream_model_name():
    assert translate([user("hi")])["model"] == "claude-test"


def test_it_moves_system_and_developer_messages_to_the_top_level_system():
    request = translate(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            user("hi"),
        ]
    )

    assert request["system"] == "Be brief.\n\nAnswer in French."
    assert request["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_it_sends_no_system_when_there_is_none():
    assert "system" not in translate([user("hi")])


def test_it_merges_consecutive_user_turns():
    request = translate(
        [user("one"), user("two"), {"role": "assistant", "content": "ok"}, user("three")]
    )

    assert request["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}],
        },
        {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
        {"role": "user", "content": [{"type": "text", "text": "three"}]},
    ]


def test_it_merges_turns_separated_only_by_a_system_message():
    request = translate([user("one"), {"role": "system", "content": "s"}, user("two")])

    assert len(request["messages"]) == 1


def test_it_skips_empty_text_which_anthropic_rejects():
    request = translate(
        [user(""), {"role": "user", "content": [{"type": "text", "text": ""}]}, user("x")]
    )

    assert request["messages"] == [{"role": "user", "content": [{"type": "text", "text": "x"}]}]


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"max_completion_tokens": 10, "max_tokens": 20}, 10),
        ({"max_tokens": 20}, 20),
        ({}, 1024),
    ],
)
def test_it_takes_max_tokens_from_the_first_field_that_is_set(fields, expected):
    assert translate([user("hi")], **fields)["max_tokens"] == expected


def test_it_translates_function_tools_to_input_schema():
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    tools = [
        {
            "type": "function",
            "function": {"name": "weather", "description": "Look it up", "parameters": schema},
        },
        {"type": "function", "function": {"name": "now"}},
    ]

    request = translate([user("hi")], tools=tools)

    assert request["tools"] == [
        {"name": "weather", "description": "Look it up", "input_schema": schema},
        {"name": "now", "input_schema": {"type": "object", "properties": {}}},
    ]
    assert "tool_choice" not in request  # auto is Anthropic's default


TOOLS = [{"type": "function", "function": {"name": "weather", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            {"type": "tool", "name": "weather"},
        ),
    ],
)
def test_it_maps_tool_choice(choice, expected):
    assert translate([user("hi")], tools=TOOLS, tool_choice=choice)["tool_choice"] == expected


def test_it_maps_parallel_tool_calls_false_to_disable_parallel_tool_use():
    request = translate([user("hi")], tools=TOOLS, parallel_tool_calls=False)

    assert request["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}


def test_it_combines_a_forced_tool_with_disabled_parallel_calls():
    request = translate(
        [user("hi")], tools=TOOLS, tool_choice="required", parallel_tool_calls=False
    )

    assert request["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_it_drops_tool_choice_when_there_are_no_tools():
    assert "tool_choice" not in translate([user("hi")], tool_choice="auto")


def test_it_turns_assistant_tool_calls_into_tool_use_blocks():
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    request = translate([user("hi"), {"role": "assistant", "content": None, "tool_calls": [call]}])

    assert request["messages"][1] == {
        "role": "assistant",
        "content": [
            {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Paris"}}
        ],
    }


def test_it_keeps_assistant_text_before_its_tool_calls():
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": ""}}
    request = translate(
        [user("hi"), {"role": "assistant", "content": "Checking.", "tool_calls": [call]}]
    )

    assert request["messages"][1]["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "c", "name": "f", "input": {}},
    ]


@pytest.mark.parametrize("arguments", ["{not json", "[1, 2]"])
def test_it_refuses_tool_call_arguments_that_are_not_a_json_object(arguments):
    call = {"id": "c", "type": "function", "function": {"name": "f", "arguments": arguments}}

    with pytest.raises(TranslationError) as caught:
        translate([user("hi"), {"role": "assistant", "tool_calls": [call]}])

    error = caught.value
    assert isinstance(error, UpstreamError)
    assert (error.status, error.kind, error.retryable) == (400, "client_error", False)
    assert error.body["error"]["type"] == "invalid_request_error"
    assert error.body["error"]["param"] == "messages[1].tool_calls[0].function.arguments"


def test_it_puts_tool_results_in_one_user_turn_before_any_text():
    calls = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": "{}"}},
        {"id": "b", "type": "function", "function": {"name": "f", "arguments": "{}"}},
    ]
    request = translate(
        [
            user("hi"),
            {"role": "assistant", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "a", "content": "sunny"},
            {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "rainy"}]},
            user("thanks"),
        ]
    )

    assert request["messages"][2] == {
        "role": "user",
        "content": [
            {"type": "tool_result", "tool_use_id": "a", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "b", "content": "rainy"},
            {"type": "text", "text": "thanks"},
        ],
    }


def test_it_refuses_a_tool_message_without_tool_call_id():
    with pytest.raises(TranslationError):
        translate([user("hi"), {"role": "tool", "content": "x"}])


@pytest.mark.parametrize(("stop", "expected"), [("END", ["END"]), (["a", "b"], ["a", "b"])])
def test_it_maps_stop_to_stop_sequences(stop, expected):
    assert translate([user("hi")], stop=stop)["stop_sequences"] == expected


def test_it_passes_temperature_and_top_p_and_drops_what_anthropic_lacks():
    request = translate(
        [user("hi")],
        temperature=0.2,
        top_p=0.9,
        seed=1,
        logprobs=True,
        response_format={"type": "json_object"},
    )

    assert (request["temperature"], request["top_p"]) == (0.2, 0.9)
    assert not {"seed", "logprobs", "response_format", "n", "stream"} & request.keys()


def test_it_maps_user_to_metadata_user_id():
    assert translate([user("hi")], user="u-42")["metadata"] == {"user_id": "u-42"}


def test_it_refuses_more_than_one_choice():
    with pytest.raises(TranslationError) as caught:
        translate([user("hi")], n=2)

    assert caught.value.param == "n"


def test_it_turns_a_data_uri_image_into_a_base64_source():
    part = {
        "type": "image_url",
        "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
    }

    request = translate(
        [{"role": "user", "content": [{"type": "text", "text": "What is it?"}, part]}]
    )

    assert request["messages"][0]["content"][1] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": PNG},
    }


def test_it_turns_an_http_image_into_a_url_source():
    part = {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}}

    request = translate([{"role": "user", "content": [part]}])

    assert request["messages"][0]["content"][0]["source"] == {
        "type": "url",
        "url": "https://example.com/cat.jpg",
    }


def test_it_turns_an_inline_pdf_into_a_document():
    part = {
        "type": "file",
        "file": {"file_data": "data:application/pdf;base64,JVBERi0=", "filename": "a.pdf"},
    }

    block = translate([{"role": "user", "content": [part]}])["messages"][0]["content"][0]

    assert block == {
        "type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        "title": "a.pdf",
    }


@pytest.mark.parametrize(
    "part",
    [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}},
        {"type": "image_url", "image_url": {"url": "data:image/png,not-base64"}},
        {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}},
        {"type": "file", "file": {"file_id": "file-123"}},
    ],
)
def test_it_refuses_content_it_cannot_express(part):
    with pytest.raises(TranslationError):
        translate([{"role": "user", "content": [part]}])


def test_it_refuses_an_unknown_role():
    with pytest.raises(TranslationError) as caught:
        translate([{"role": "function", "name": "f", "content": "x"}])

    assert caught.value.param == "messages[0].role"


def test_it_does_not_modify_the_request_it_was_given():
    messages = [user("one"), user("two")]

    translate(messages)

    assert messages == [user("one"), user("two")]
