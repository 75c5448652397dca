"""The free text of an audit row: every such column redacted, withheld when that fails or
no rules are known, and one search per rule for the whole row (audit/row_text.py,
CompiledRules.audit_row)."""

from __future__ import annotations

import re

import orjson
import pytest

from audit.payloads import walk_item
from audit.redaction import (
    CompiledRule,
    CompiledRules,
    compile_rules,
    redact_row,
)
from audit.row import RedactionRules
from audit.row_text import WITHHELD, redact_fields
from tests.audit.test_redaction import NEGATIVES, POSITIVES, rule

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
    out = redact_row(None, a_row_full_of_pii())
    assert "jane@example.com" not in orjson.dumps(out).decode()
    assert out["error_message"] == out["route"] == out["response"] == WITHHELD
    assert out["metadata"] == {"usage_estimated": True, "redaction": "failed: withheld"}
    assert out["error_type"] == "invalid_value"  # a code, kept for the operator


# --- one search per rule for a whole row ------------------------------------------------------
def every_rule_text_by_text(rules, fields: dict) -> dict:
    """The reference: every rule on every text, no search over joined texts first."""
    return redact_fields(dict(fields), rules.redact_for_audit)


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
                else walk_item(key, value, redact, keys=False, protocol=True)
                for key, value in body.items()
            }
            assert upstream.upstream_body(body) == reference, body


def test_a_row_without_pii_is_stored_as_it_came_without_a_copy() -> None:
    prompt = [{"role": "user", "content": "Order 123456 of 2026-12-04, 3 items at 49.99 EUR"}]
    row = {"prompt": prompt, "response": "Shipped on 2026-12-01.", "metadata": {"user": "u-1"}}
    out = compile_rules([rule(d, d) for d in POSITIVES]).audit_row(row)
    assert out["prompt"] is prompt


@pytest.mark.parametrize("finder", [None, re.compile("@")], ids=["custom", "built-in"])
def test_a_rule_that_fails_on_a_row_withholds_its_text_and_keeps_the_row(finder) -> None:
    def broken(text: str) -> str:
        raise RuntimeError("a bug in a detector")

    failing = CompiledRules(
        RedactionRules(()), [CompiledRule("broken", None, broken, finder=finder)], ()
    )
    out = failing.audit_row(a_row_full_of_pii())
    assert "jane@example.com" not in orjson.dumps(out).decode()
    assert out["prompt"] == [{"role": "system", "content": WITHHELD}]
    assert (out["request_id"], out["provider"]) == ("req_1", "openai")
