"""Redaction rules: the built-in detectors, rule order and scope, pattern safety."""

from __future__ import annotations

import time

import pytest

from audit.detectors import iban_valid, luhn_valid
from audit.models import RedactionRule
from audit.redaction import (
    compile_pattern,
    compile_rules,
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
