"""Redaction: the built-in detectors, rule order and scope, and OpenAI-shaped payloads."""

from __future__ import annotations

import re
import time

import orjson
import pytest

from audit.detectors import iban_valid, luhn_valid
from audit.models import RedactionRule
from audit.redaction import (
    NO_RULES,
    UNKNOWN_RULES,
    WITHHELD,
    CompiledRule,
    CompiledRules,
    _audit_row,
    _walk_item,
    compile_pattern,
    compile_rules,
    redact_completion,
    redact_messages,
)


def rule(name: str, detector: str = "regex", **kwargs: object) -> RedactionRule:
    kwargs.setdefault("replacement", f"[{name.upper()}]")
    return RedactionRule(name=name, detector=detector, **kwargs)  # unsaved: no database


def redact(detector: str, text: str) -> str:
    return compile_rules([rule("x", detector)]).redact_for_audit(text)


GATEWAY_KEY = "gwk_" + "AbCd1234" + "x" * 40

POSITIVES = {
    "email": [
        "jane.doe@example.com",
        "j.doe+tag@mail.example.co.uk",
        "ops_team-1@sub.domain.io",
    ],
    "phone": [
        "+1 (415) 555-2671",
        "+44 20 7946 0958",
        "+44 (0)20 7946 0958",
        "+4915112345678",
        "+33 1 23 45 67 89",
        "(415) 555-2671",
        "415-555-2671",
        "415.555.2671",
        "1-800-555-1234",
        "020 7946 0958",
        "06 12 34 56 78",
        "030/1234567",
    ],
    "credit_card": [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5555 5555 5555 4444",
        "3782 822463 10005",  # Amex, 4-6-5
        "30569309025904",  # Diners, 14 digits
        "4222222222222",  # Visa, 13 digits
    ],
    "iban": [
        "DE89 3704 0044 0532 0130 00",
        "DE89370400440532013000",
        "GB82 WEST 1234 5698 7654 32",
        "FR14 2004 1010 0505 0001 3M02 606",
        "NO93 8601 1117 947",
    ],
    "ipv4": ["192.168.1.10", "10.0.0.1", "255.255.255.255", "8.8.8.8"],
    "api_key": [
        "sk-" + "a1B2" * 12,
        "sk-proj-" + "Ab3_-x" * 20,
        "sk-ant-api03-" + "Zz9-" * 20,
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a" * 36,
        "gho_" + "B1" * 18,
        "github_pat_" + "11ABCDEFG0" * 8,
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKl",
        "AIza" + "SyD-" * 8 + "abc",
        "sk_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
        GATEWAY_KEY,
    ],
}

NEGATIVES = {
    "email": ["user@localhost", "a@b", "foo@bar.c", "@handle", "me at example dot com"],
    "phone": [
        "2024-01-15",
        "15.01.2024",
        "01/15/2024",
        "05.06.2024",
        "in 2024",
        "from 2019-2020",
        "order 123456789",
        "12345",
        "1 000 000",
        "ISBN 978-3-16-148410-0",
        "192.168.1.100",
        "10:30:45",
        "$1,234,567.89",
    ],
    "credit_card": [
        "4111 1111 1111 1112",  # fails Luhn
        "4111111111111112",
        "1234 5678 9012 3456",
        "0000 0000 0000 0000",  # passes Luhn, but a placeholder
        "411111111111",  # too short
        "41111111111111111111",  # 20 digits: too long to be a card
        "0.4111111111111111",
    ],
    "iban": [
        "DE89 3704 0044 0532 0130 01",  # bad check digits
        "DE89 3704 0044 0532 0130",  # wrong length for DE
        "XX89 3704 0044 0532 0130 00",  # no such country
        "AB12 CDEF GHIJ KLMN",
    ],
    "ipv4": ["256.1.1.1", "1.2.3.4.5", "v1.2.3.4", "1.2.3", "999.1.1.1", "1.2.3.256"],
    "api_key": [
        "sk-short",
        "task-management-system-design-document",
        "AKIA1234",
        "ghp_tooshort",
        "the skeleton key",
        "gwk_AbCd1234",  # only the public prefix
    ],
}


@pytest.mark.parametrize(
    ("detector", "value"), [(d, v) for d, values in POSITIVES.items() for v in values]
)
def test_it_redacts_what_each_detector_is_for(detector: str, value: str) -> None:
    assert redact(detector, f"see {value} here.") == "see [X] here."


@pytest.mark.parametrize(
    ("detector", "value"), [(d, v) for d, values in NEGATIVES.items() for v in values]
)
def test_it_leaves_look_alikes_alone(detector: str, value: str) -> None:
    text = f"see {value} here."
    assert redact(detector, text) == text


def test_luhn_and_mod97_checks() -> None:
    assert luhn_valid("79927398713")
    assert not luhn_valid("79927398710")
    assert iban_valid("GB82WEST12345698765432")
    assert not iban_valid("GB82WEST12345698765433")


def test_an_iban_followed_by_an_upper_case_word_keeps_the_word() -> None:
    assert redact("iban", "BE68 5390 0754 7034 CODE") == "[X] CODE"


def test_every_match_in_a_text_is_redacted() -> None:
    text = "a@example.com, b@example.org and c@example.net"
    assert redact("email", text) == "[X], [X] and [X]"


def test_text_without_a_trigger_is_returned_unchanged() -> None:
    rules = compile_rules([rule(d, d) for d in POSITIVES])
    text = "Plain words, nothing sensitive at all."
    assert rules.redact_for_audit(text) is text
    assert rules.redact_for_audit("") == ""


def test_rules_apply_in_order() -> None:
    rules = [
        rule("first", pattern="secret", replacement="[S]"),
        rule("second", pattern=r"\[S\]", replacement="[HIDDEN]"),
    ]
    assert compile_rules(rules).redact_for_audit("a secret") == "a [HIDDEN]"
    assert compile_rules(rules[::-1]).redact_for_audit("a secret") == "a [S]"


def test_only_upstream_rules_touch_the_upstream_prompt() -> None:
    compiled = compile_rules(
        [
            rule("mail", "email", scope="audit"),
            rule("card", "credit_card", scope="audit_and_upstream"),
        ]
    )
    text = "jane@example.com pays with 4111 1111 1111 1111"
    assert compiled.has_upstream_rules
    assert compiled.redact_for_upstream(text) == "jane@example.com pays with [CARD]"
    assert compiled.redact_for_audit(text) == "[MAIL] pays with [CARD]"


def test_audit_only_rules_have_no_upstream_rules() -> None:
    compiled = compile_rules([rule("mail", "email")])
    assert not compiled.has_upstream_rules
    assert compiled.redact_for_upstream("jane@example.com") == "jane@example.com"


def test_disabled_rules_are_skipped() -> None:
    compiled = compile_rules([rule("mail", "email", enabled=False)])
    assert compiled.redact_for_audit("jane@example.com") == "jane@example.com"


def test_regex_rules_use_their_pattern_and_a_literal_replacement() -> None:
    compiled = compile_rules([rule("ticket", pattern=r"TCK-(\d{6})", replacement=r"[T\1]")])
    assert compiled.redact_for_audit("see TCK-123456, not TCK-12") == r"see [T\1], not TCK-12"


def test_rules_need_no_model_instance() -> None:
    class Plain:
        name = "plain"
        detector = "ipv4"
        pattern = ""
        replacement = "[IP]"
        scope = "audit_and_upstream"

    assert compile_rules([Plain()]).redact_for_upstream("host 10.1.2.3") == "host [IP]"


@pytest.mark.parametrize(
    "pattern", ["(", "a*", r"\b", "(a+)+", r"(\w+\s?)*$", "(a|b+){2,100}", "x" * 1001]
)
def test_bad_or_unsafe_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError):
        compile_pattern(pattern)


@pytest.mark.parametrize(
    "pattern", ["TCK-[0-9]{6}", r"(?:\d{3}-)+\d{4}", r"(?:\w+\s)++end", r"(?i)secret"]
)
def test_ordinary_patterns_compile(pattern: str) -> None:
    assert compile_pattern(pattern).pattern == pattern


def test_compiling_an_invalid_stored_rule_fails_loudly() -> None:
    with pytest.raises(ValueError, match="'broken'"):
        compile_rules([rule("broken", pattern="(")])
    with pytest.raises(ValueError, match="unknown detector"):
        compile_rules([rule("odd", "nope")])


def test_model_validation_uses_the_same_pattern_check() -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError):
        rule("bad", pattern="(a+)+").clean()


def test_hostile_inputs_stay_fast() -> None:
    rules = compile_rules([rule(d, d) for d in POSITIVES])
    started = time.perf_counter()
    for text in ["a" * 50_000 + "@" + "b" * 50_000, "1" * 100_000, "+1" + " 1" * 50_000]:
        rules.redact_for_audit(text)
    assert time.perf_counter() - started < 2


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
    assert redact_messages(None, MAIL) is None  # type: ignore[arg-type]


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


# --- the audit row ----------------------------------------------------------------------------
AUDIT_MAIL = compile_rules([rule("mail", "email", replacement="[EMAIL]")])


def a_row_full_of_pii() -> dict:
    return {
        "request_id": "req_1",
        "tenant_slug": "acme",
        "route": "jane@example.com",
        "requested_model": "jane@example.com",
        "provider": "openai",
        "model": "gpt-4o-mini",
        "error_type": "invalid_value",
        "error_message": "Unknown model 'jane@example.com'.",
        "prompt": [{"role": "user", "content": "I am jane@example.com"}],
        "response": "Hello jane@example.com",
        "attempt_log": [
            {
                "provider": "openai",
                "model": "gpt-4o-mini",
                "ms": 3,
                "ok": False,
                "kind": "http_400",
                "status": 400,
                "error": "bad address jane@example.com",
            },
        ],
        "metadata": {
            "user": "jane@example.com",
            "tags": {"customer": "jane@example.com", "jane@example.com": "x", "[EMAIL]": "y"},
            "client_request_id": "jane@example.com:42",
            "cache": "miss",
            "usage_estimated": True,
        },
    }


def test_every_free_text_field_of_the_audit_row_is_redacted() -> None:
    out = AUDIT_MAIL.audit_row(a_row_full_of_pii())
    assert "jane@example.com" not in orjson.dumps(out).decode()
    assert (out["route"], out["requested_model"]) == ("[EMAIL]", "[EMAIL]")
    assert out["error_message"] == "Unknown model '[EMAIL]'."
    assert out["attempt_log"][0]["error"] == "bad address [EMAIL]"
    assert out["attempt_log"][0]["status"] == 400
    assert out["metadata"]["user"] == "[EMAIL]"
    assert out["metadata"]["client_request_id"] == "[EMAIL]:42"
    # A tag name is the client's text too; two names redacted alike both survive.
    assert out["metadata"]["tags"] == {"customer": "[EMAIL]", "[EMAIL]": "x", "[EMAIL]#2": "y"}
    assert (out["metadata"]["cache"], out["metadata"]["usage_estimated"]) == ("miss", True)
    assert (out["tenant_slug"], out["provider"], out["model"]) == ("acme", "openai", "gpt-4o-mini")


def test_a_replacement_longer_than_the_text_never_overflows_a_column() -> None:
    longer = compile_rules([rule("m", "email", replacement="[A VERY LONG REPLACEMENT]")])
    out = longer.audit_row({"route": "a@example.io " * 16, "error_type": "a@example.io"})
    assert len(out["route"]) == 200  # AuditEvent.route's max_length
    assert out["error_type"] == "[A VERY LONG REPLACEMENT]"


def test_a_field_whose_redaction_fails_is_withheld_and_the_others_still_redacted() -> None:
    row = a_row_full_of_pii()
    row["prompt"] = [{"role": "user", "content": "I am jane@example.com", "deep": []}]
    deep = row["prompt"][0]["deep"]
    for _ in range(5000):  # deeper than the stack: the walk cannot finish
        deep.append([])
        deep = deep[0]
    out = AUDIT_MAIL.audit_row(row)
    assert out["prompt"] == [{"role": "system", "content": WITHHELD}]
    assert out["error_message"] == "Unknown model '[EMAIL]'."


def test_a_row_with_no_rules_to_go_by_withholds_every_free_text_field() -> None:
    out = UNKNOWN_RULES.audit_row(a_row_full_of_pii())
    assert "jane@example.com" not in orjson.dumps(out).decode()
    assert out["error_message"] == out["route"] == out["response"] == WITHHELD
    assert out["metadata"] == {"usage_estimated": True, "redaction": "failed: withheld"}
    assert out["error_type"] == "invalid_value"  # a code, kept for the operator


# --- one search per rule for a whole row ------------------------------------------------------
def every_rule_text_by_text(rules, fields: dict) -> dict:  # type: ignore[no-untyped-def]
    """The reference: every rule on every text, no search over joined texts first."""
    return _audit_row(dict(fields), rules.redact_for_audit)


SAMPLES = [
    *(value for values in POSITIVES.values() for value in values),
    *(value for values in NEGATIVES.values() for value in values),
    "secret at the start",
    "no secret here",
]
NEIGHBOURS = ["", "\n", "\x00", '"', "\\", " ", "x", "1", "+", "-", "."]


# Each puts the text in one place only, so that a place the search misses shows.
PLACES = [
    lambda text: {"route": text},
    lambda text: {"error_message": f"refused {text}"},
    lambda text: {"response": text},
    lambda text: {"prompt": [{"role": "user", "content": text}]},
    lambda text: {"prompt": [{"role": "user", "content": "hi", "name": text}]},
    lambda text: {"prompt": [{"role": "user", "content": [{"type": "text", "text": text}]}]},
    lambda text: {"metadata": {"tags": {text: "v"}}},
    lambda text: {"metadata": {"items": [{"type": text}]}},  # the client's key, not protocol
    lambda text: {"metadata": [{"type": text}]},
    lambda text: {"attempt_log": [{"error": text, "ms": 3}]},
]
UPSTREAM_PLACES = [
    lambda text: {"user": text},
    lambda text: {"messages": [{"role": "user", "content": text}]},
    lambda text: {"tools": [{"type": "function", "function": {"description": text}}]},
    lambda text: {"metadata": {"k": [{"type": text}]}},
    lambda text: {"metadata": [{"type": text}]},
    lambda text: {"stop": [text]},
]


@pytest.mark.parametrize("custom_first", [False, True])
def test_searching_joined_texts_first_changes_no_result(custom_first: bool) -> None:
    anchored = rule("anchored", pattern="^secret", replacement="[S]")  # only at a text's start
    chain = [rule(d, d) for d in POSITIVES]
    rules = compile_rules([anchored, *chain] if custom_first else [*chain, anchored])
    upstream = compile_rules([rule(d, d, scope="audit_and_upstream") for d in POSITIVES])
    for index, sample in enumerate(SAMPLES):
        before = NEIGHBOURS[index % len(NEIGHBOURS)]
        after = NEIGHBOURS[(index * 7 + 3) % len(NEIGHBOURS)]
        text = f"{before}{sample}{after}"
        for place in PLACES:
            row = place(text)
            assert rules.audit_row(dict(row)) == every_rule_text_by_text(rules, row), row
        for place in UPSTREAM_PLACES:
            body = {"model": "m", **place(text)}
            redact = upstream.redact_for_upstream  # every rule, on every text
            reference = {
                key: value
                if key == "model"
                else _walk_item(key, value, redact, keys=False, protocol=True)
                for key, value in body.items()
            }
            assert upstream.upstream_body(body) == reference, body


def test_a_row_without_pii_is_stored_as_it_came_without_a_copy() -> None:
    prompt = [{"role": "user", "content": "Order 123456 of 2026-12-04, 3 items at 49.99 EUR"}]
    row = {"prompt": prompt, "response": "Shipped on 2026-12-01.", "metadata": {"user": "u-1"}}
    out = compile_rules([rule(d, d) for d in POSITIVES]).audit_row(row)
    assert out["prompt"] is prompt


@pytest.mark.parametrize("finder", [None, re.compile("@")], ids=["custom", "built-in"])
def test_a_rule_that_fails_on_a_row_withholds_its_text_and_keeps_the_row(finder) -> None:  # type: ignore[no-untyped-def]
    def broken(text: str) -> str:
        raise RuntimeError("a bug in a detector")

    failing = CompiledRules([CompiledRule("broken", None, broken, finder=finder)], ())
    out = failing.audit_row(a_row_full_of_pii())
    assert "jane@example.com" not in orjson.dumps(out).decode()
    assert out["prompt"] == [{"role": "system", "content": WITHHELD}]
    assert (out["request_id"], out["provider"]) == ("req_1", "openai")
