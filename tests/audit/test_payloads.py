"""Redacted copies of OpenAI-shaped payloads: chat messages, completions, the whole body
sent upstream (audit/payloads.py, CompiledRules.upstream_body)."""

from __future__ import annotations

import orjson

from audit.payloads import redact_completion, redact_messages
from audit.redaction import (
    NO_RULES,
    compile_rules,
)
from tests.audit.test_redaction import rule

# --- messages -------------------------------------------------------------------------------
MAIL = compile_rules([rule("mail", "email", replacement="[EMAIL]")]).redact_for_audit


def test_redact_messages_covers_every_text_field_and_copies() -> None:
    messages = [
        {"role": "system", "content": "Reply to ops@example.com"},
        {
            "role": "user",
            "name": "jane@example.com",
            "content": [
                {"type": "text", "text": "I am jane@example.com"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,a@b.png"}},
                {"type": "image_url", "image_url": {"url": "https://x.test/jane@example.com"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "lookup", "arguments": '{"email": "jane@example.com"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "found jane@example.com"},
    ]
    original = repr(messages)
    out = redact_messages(messages, MAIL)
    assert repr(messages) == original  # the input is untouched
    assert out[0]["content"] == "Reply to [EMAIL]"
    assert out[1]["name"] == "[EMAIL]"
    assert out[1]["content"][0] == {"type": "text", "text": "I am [EMAIL]"}
    # Inline base64 is bytes, not words: left as it is (and still a copy).
    assert out[1]["content"][1] == messages[1]["content"][1]
    assert out[1]["content"][1] is not messages[1]["content"][1]
    assert out[1]["content"][2]["image_url"]["url"] == "https://x.test/[EMAIL]"
    assert out[2]["tool_calls"][0]["function"]["arguments"] == '{"email": "[EMAIL]"}'
    assert out[2]["tool_calls"][0]["id"] == "call_1"
    assert out[3]["content"] == "found [EMAIL]"


def test_redact_messages_survives_malformed_input() -> None:
    messages = [
        "not a message",
        {"role": "user", "content": 42},
        {"role": "user", "content": [None, "raw a@example.com", {"type": "text", "text": 5}]},
        {"role": "assistant", "tool_calls": [None, {"function": None}, {"function": "x"}]},
        {"role": "assistant", "function_call": {"name": "f", "arguments": "a@example.com"}},
    ]
    out = redact_messages(messages, MAIL)
    assert out[0] == "not a message"
    assert out[1]["content"] == 42
    assert out[2]["content"] == [None, "raw [EMAIL]", {"type": "text", "text": 5}]
    assert out[3]["tool_calls"] == [None, {"function": None}, {"function": "x"}]
    assert out[4]["function_call"]["arguments"] == "[EMAIL]"
    assert redact_messages(None, MAIL) is None


def test_upstream_messages_are_not_copied_when_no_rule_applies_upstream() -> None:
    messages = [{"role": "user", "content": "jane@example.com, card 4111 1111 1111 1111"}]
    audit_only = compile_rules([rule("mail", "email")])
    assert audit_only.upstream_messages(messages) is messages
    assert audit_only.audit_messages(messages)[0]["content"] == "[MAIL], card 4111 1111 1111 1111"
    both = compile_rules([rule("card", "credit_card", scope="audit_and_upstream")])
    assert both.upstream_messages(messages)[0]["content"] == "jane@example.com, card [CARD]"


def test_redact_completion_covers_choices() -> None:
    body = {
        "id": "chatcmpl-1",
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": "mail jane@example.com"}},
            {"index": 1, "text": "or ops@example.com"},
        ],
    }
    out = redact_completion(body, MAIL)
    assert out["choices"][0]["message"]["content"] == "mail [EMAIL]"
    assert out["choices"][1]["text"] == "or [EMAIL]"
    assert body["choices"][0]["message"]["content"] == "mail jane@example.com"


# --- the whole upstream body ------------------------------------------------------------------
UPSTREAM_MAIL = compile_rules(
    [rule("mail", "email", replacement="[EMAIL]", scope="audit_and_upstream")]
)


def a_body_full_of_pii() -> dict:
    return {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "You help jane@example.com."},
            {
                "role": "user",
                "name": "jane@example.com",
                "content": [
                    {"type": "text", "text": "I am jane@example.com"},
                    {
                        "type": "input_audio",
                        "input_audio": {"data": "amFuZUBleGFt@x.io", "format": "wav"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": '{"to": "jane@example.com"}'},
                    }
                ],
            },
        ],
        "user": "jane@example.com",
        "metadata": {"jane@example.com": "owner jane@example.com", "type": "jane@example.com"},
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "lookup",
                    "description": "Ask jane@example.com first.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "to": {"type": "string", "enum": ["jane@example.com", "ops"]},
                        },
                    },
                },
            }
        ],
        "tool_choice": "auto",
        "stop": ["jane@example.com"],
        "temperature": 0.2,
        "max_tokens": 30,
        "stream": False,
    }


def test_an_upstream_rule_covers_every_string_the_client_sends() -> None:
    body = a_body_full_of_pii()
    original = repr(body)
    out = UPSTREAM_MAIL.upstream_body(body)
    assert repr(body) == original  # the input is untouched (the cache and counters read it)
    assert (
        "jane@example.com"
        not in orjson.dumps({**out, "metadata": list(out["metadata"].values())}).decode()
    )
    assert out["user"] == "[EMAIL]"
    assert out["messages"][0]["content"] == "You help [EMAIL]."
    assert out["messages"][1]["name"] == "[EMAIL]"
    assert out["messages"][2]["tool_calls"][0]["function"]["arguments"] == '{"to": "[EMAIL]"}'
    function = out["tools"][0]["function"]
    assert function["description"] == "Ask [EMAIL] first."
    assert function["parameters"]["properties"]["to"]["enum"] == ["[EMAIL]", "ops"]
    assert out["stop"] == ["[EMAIL]"]
    # Keys are structure; and in the client's own map, "type" is no protocol enum.
    assert out["metadata"] == {"jane@example.com": "owner [EMAIL]", "type": "[EMAIL]"}


def test_upstream_redaction_keeps_the_structure_the_provider_needs() -> None:
    body = a_body_full_of_pii()
    out = compile_rules(
        [rule("everything", pattern=r"(?i)[a-z]+", replacement="X", scope="audit_and_upstream")]
    ).upstream_body(body)
    assert out["model"] == "gpt-4o-mini"  # the gateway's choice of target
    assert [m["role"] for m in out["messages"]] == ["system", "user", "assistant"]
    assert (out["tools"][0]["type"], out["tool_choice"]) == ("function", "auto")
    assert out["tools"][0]["function"]["parameters"]["type"] == "object"
    assert out["messages"][1]["content"][1] == body["messages"][1]["content"][1]  # base64
    assert (out["temperature"], out["max_tokens"], out["stream"]) == (0.2, 30, False)
    assert list(out["tools"][0]["function"]["parameters"]["properties"]) == ["to"]


def test_without_an_upstream_rule_the_body_is_not_even_walked() -> None:
    body = a_body_full_of_pii()
    assert compile_rules([rule("mail", "email")]).upstream_body(body) is body
    assert NO_RULES.upstream_body(body) is body
