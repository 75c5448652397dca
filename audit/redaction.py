"""PLACEHOLDER - replaced by the redaction implementation."""

from __future__ import annotations

import re
from collections.abc import Iterable


def compile_pattern(pattern: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"Invalid regular expression: {exc}") from exc


class CompiledRules:
    def __init__(self, rules: list) -> None:
        self.rules = rules
        self.has_upstream_rules = False

    def redact_for_audit(self, text: str) -> str:
        return text

    def redact_for_upstream(self, text: str) -> str:
        return text


def compile_rules(rules: Iterable) -> CompiledRules:
    return CompiledRules(list(rules))
