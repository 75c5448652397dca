from __future__ import annotations

import pytest

from gateway_project.lib.errors import GatewayError
from routing.proxy.request import parse_chat_request

USER = [{"role": "user", "content": "hi"}]


def parse(body: dict, route_header: str | None = None):
    return parse_chat_request(body, route_header=route_header)


def rejects(body: dict, fragment: str) -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        parse(body)
    assert caught.value.status == 400
    assert caught.value.type == "invalid_request_error"
    assert fragment in caught.value.message
    return caught.value


def test_it_passes_unknown_fields_through_untouched():
    chat = parse({"model": "m", "messages": USER, "seed": 7, "brand_new_param": {"x": 1}})
    assert chat.body["brand_new_param"] == {"x": 1}
    assert chat.body["seed"] == 7
    assert chat.route_name == "m"


def test_the_route_header_wins_over_the_model_field():
    chat = parse({"messages": USER}, route_header="support_copilot")
    assert chat.route_name == "support_copilot"
    assert chat.requested_model == ""


def test_it_requires_a_model_or_a_route_header():
    error = rejects({"messages": USER}, "'model' is required")
    assert error.param == "model"


@pytest.mark.parametrize("field", ["api_key", "base_url", "api_base", "extra_headers"])
def test_it_refuses_fields_that_would_redirect_the_call(field):
    error = rejects({"model": "m", "messages": USER, field: "x"}, "not accepted")
    assert error.param == field


@pytest.mark.parametrize(
    ("messages", "fragment"),
    [
        ([], "non-empty array"),
        ("hello", "non-empty array"),
        ([{"role": "wizard", "content": "x"}], "role must be one of"),
        ([{"role": "user", "content": 5}], "must be a string or an array"),
        ([{"role": "user"}], "content is required"),
        ([{"role": "tool", "content": "42"}], "tool_call_id is required"),
        (
            [
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [{"function": {"arguments": {}}}],
                }
            ],
            "must be a JSON string",
        ),
    ],
)
def test_it_rejects_malformed_messages(messages, fragment):
    rejects({"model": "m", "messages": messages}, fragment)


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("max_tokens", "ten", "must be an integer"),
        ("max_tokens", 0, "at least 1"),
        ("temperature", "hot", "must be a number"),
        ("stream", "yes", "must be a boolean"),
        ("n", True, "must be an integer"),
        ("model", 42, "must be a string"),
    ],
)
def test_it_rejects_wrong_types(field, value, fragment):
    error = rejects({"model": "m", "messages": USER, field: value}, fragment)
    assert error.param == field


def test_the_gateway_extension_is_stripped_and_its_tags_kept():
    chat = parse(
        {
            "model": "m",
            "messages": USER,
            "user": "u_1",
            "x-gateway": {"metadata": {"feature": "chat", "user_id": "u_123"}},
        }
    )
    assert "x-gateway" not in chat.body
    assert chat.metadata == {"tags": {"feature": "chat", "user_id": "u_123"}, "user": "u_1"}


def test_usage_is_included_only_when_a_stream_asks_for_it():
    assert parse({"model": "m", "messages": USER, "stream": True}).include_usage is False
    chat = parse(
        {"model": "m", "messages": USER, "stream": True, "stream_options": {"include_usage": True}}
    )
    assert chat.stream and chat.include_usage


def test_it_refuses_120000_content_parts_by_default_with_a_400():
    parts = [{"type": "text", "text": "w"}] * 120_000
    error = rejects(
        {"model": "m", "messages": [{"role": "user", "content": parts}]},
        "At most 10000 content parts",
    )
    assert (error.code, error.param) == ("too_many_content_parts", "messages")


def test_content_parts_are_counted_over_every_message(settings):
    settings.GATEWAY_MAX_CONTENT_PARTS = 10
    six = [{"type": "text", "text": "w"}] * 6
    parse({"model": "m", "messages": [{"role": "user", "content": six[:5]}] * 2})
    error = rejects({"model": "m", "messages": [{"role": "user", "content": six}] * 2}, "got 12")
    assert error.code == "too_many_content_parts"


def test_it_refuses_more_messages_than_the_default_limit_with_a_400():
    error = rejects({"model": "m", "messages": USER * 2001}, "At most 2000 messages")
    assert (error.code, error.param) == ("too_many_messages", "messages")
    parse({"model": "m", "messages": USER * 2000})
