"""Redaction of prompts and completions, compiled once per config snapshot.

Rules run in their configured order. Every enabled rule applies to the audit copy; only
rules with scope `audit_and_upstream` also rewrite the prompt before it leaves for the
provider. This runs on every request, so all patterns are compiled up front, a rule
whose trigger character is absent from the text costs one substring test, and text
without any rule left to apply is returned as the same object (no copy).

Replacements are literal text: a `\\1` in a replacement is not a group reference.

`compile_rules` fails closed: a rule that cannot be compiled raises ValueError rather
than being skipped, because a skipped upstream rule would leak what it was meant to
hide. Every write path (the admin's `clean()`, the config importer) validates patterns
with `compile_pattern`, so this only happens if rows are edited behind its back.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from audit.detectors import BUILT_IN, Check, Trigger

try:  # Python 3.11 renamed the parser module; both expose the same structures.
    from re import _constants as _sre_constants  # type: ignore[attr-defined]
    from re import _parser as _sre_parse  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover
    import sre_constants as _sre_constants  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

MAX_PATTERN_LENGTH = 1000
UPSTREAM_SCOPE = "audit_and_upstream"
REGEX_DETECTOR = "regex"

Redact = Callable[[str], str]


class RuleLike(Protocol):
    name: str
    detector: str
    pattern: str
    replacement: str
    scope: str


# --- pattern safety ---------------------------------------------------------------------------
_REPEATS = {_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT}
_MAXREPEAT = _sre_constants.MAXREPEAT
# An outer quantifier above this many repetitions backtracks like an unbounded one.
_LARGE_REPEAT = 32


def _children(op: Any, av: Any) -> list[Any]:
    """The sub-patterns directly under one parsed node, whatever its kind."""
    if op in _REPEATS or op == _sre_constants.POSSESSIVE_REPEAT:
        return [av[2]]
    if op == _sre_constants.SUBPATTERN:
        return [av[3]]
    if op == _sre_constants.BRANCH:
        return list(av[1])
    if op in (_sre_constants.ASSERT, _sre_constants.ASSERT_NOT):
        return [av[1]]
    if op == _sre_constants.ATOMIC_GROUP:
        return []  # no backtracking into an atomic group: nothing inside can explode
    if op == _sre_constants.GROUPREF_EXISTS:
        return [branch for branch in av[1:] if branch is not None]
    return []


def _nested_unbounded_repeat(parsed: Any, inside_repeat: bool = False) -> bool:
    for op, av in parsed:
        if op in _REPEATS:
            low, high = av[0], av[1]
            variable = high == _MAXREPEAT or (high > 1 and high != low)
            if inside_repeat and variable:
                return True
            if _nested_unbounded_repeat(av[2], inside_repeat or high > _LARGE_REPEAT):
                return True
            continue
        if op == _sre_constants.POSSESSIVE_REPEAT:
            continue  # possessive: gives nothing back, so nesting is safe
        for child in _children(op, av):
            if _nested_unbounded_repeat(child, inside_repeat):
                return True
    return False


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """Compile a custom rule's pattern, refusing ones that are invalid or unsafe.

    Unsafe means: longer than MAX_PATTERN_LENGTH, able to match the empty string (it
    would insert the replacement between every character), or a variable quantifier
    nested inside an unbounded one, like `(a+)+` or `(\\w+\\s?)*`, the classic shape of
    catastrophic backtracking on a request path. Possessive quantifiers (`++`) and
    atomic groups (`(?>...)`) are the safe way to write those.
    """
    if not isinstance(pattern, str) or not pattern:
        raise ValueError("The pattern is empty.")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise ValueError(f"The pattern is longer than {MAX_PATTERN_LENGTH} characters.")
    try:
        compiled = re.compile(pattern)
        parsed = _sre_parse.parse(pattern)
    except (re.error, OverflowError, RecursionError) as exc:
        raise ValueError(f"Invalid regular expression: {exc}") from exc
    if parsed.getwidth()[0] == 0:
        raise ValueError("The pattern can match an empty string; it must match some text.")
    if _nested_unbounded_repeat(parsed):
        raise ValueError(
            "The pattern nests a variable quantifier inside an unbounded one (like (a+)+), "
            "which can take exponential time; use a possessive quantifier (++, *+) or an "
            "atomic group (?>...)."
        )
    return compiled


# --- compiled rules -------------------------------------------------------------------------
def _literal_template(replacement: str) -> str:
    # re.sub treats backslashes in a template as escapes; replacements are literal text.
    return replacement.replace("\\", "\\\\")


@dataclass(frozen=True)
class CompiledRule:
    name: str
    trigger: Trigger | None
    apply: Redact

    def __call__(self, text: str) -> str:
        if self.trigger is not None and not self.trigger(text):
            return text
        return self.apply(text)


def _applier(pattern: re.Pattern[str], replacement: str, check: Check | None) -> Redact:
    if check is None:
        template = _literal_template(replacement)
        return lambda text: pattern.sub(template, text)

    def replace(match: re.Match[str]) -> str:
        candidate = match.group()
        sensitive = check(candidate)
        if not sensitive:
            return candidate
        return replacement + candidate[sensitive:]

    return lambda text: pattern.sub(replace, text)


def compile_rule(rule: RuleLike) -> CompiledRule:
    if rule.detector == REGEX_DETECTOR:
        try:
            pattern = compile_pattern(rule.pattern)
        except ValueError as exc:
            raise ValueError(f"Redaction rule {rule.name!r}: {exc}") from exc
        return CompiledRule(rule.name, None, _applier(pattern, rule.replacement, None))
    detector = BUILT_IN.get(rule.detector)
    if detector is None:
        raise ValueError(f"Redaction rule {rule.name!r}: unknown detector {rule.detector!r}.")
    return CompiledRule(
        rule.name, detector.trigger, _applier(detector.pattern, rule.replacement, detector.check)
    )


def _run(rules: tuple[CompiledRule, ...], text: str) -> str:
    if not text or not isinstance(text, str):
        return text
    for rule in rules:
        text = rule(text)
    return text


class CompiledRules:
    """The redaction rules of one snapshot; immutable and safe to share across threads."""

    __slots__ = ("_audit", "_upstream", "has_upstream_rules", "names")

    def __init__(self, audit: Iterable[CompiledRule], upstream: Iterable[CompiledRule]) -> None:
        self._audit = tuple(audit)
        self._upstream = tuple(upstream)
        self.has_upstream_rules = bool(self._upstream)
        self.names = tuple(rule.name for rule in self._audit)

    def __bool__(self) -> bool:
        return bool(self._audit)

    def redact_for_audit(self, text: str) -> str:
        return _run(self._audit, text)

    def redact_for_upstream(self, text: str) -> str:
        return _run(self._upstream, text)

    def audit_messages(self, messages: list) -> list:
        """A redacted copy of chat messages for the audit row."""
        return redact_messages(messages, self.redact_for_audit)

    def upstream_messages(self, messages: list) -> list:
        """The messages to send upstream: the very same list when no rule applies there."""
        if not self.has_upstream_rules:
            return messages
        return redact_messages(messages, self.redact_for_upstream)


def compile_rules(rules: Iterable[RuleLike]) -> CompiledRules:
    """Compile rules in the order given (callers pass them ordered by position)."""
    audit: list[CompiledRule] = []
    upstream: list[CompiledRule] = []
    for rule in rules:
        if not getattr(rule, "enabled", True):
            continue
        compiled = compile_rule(rule)
        audit.append(compiled)
        if rule.scope == UPSTREAM_SCOPE:
            upstream.append(compiled)
    return CompiledRules(audit, upstream)


NO_RULES = CompiledRules((), ())


# --- OpenAI-shaped payloads -------------------------------------------------------------------
def _copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data, much cheaper than copy.deepcopy."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _redact_content(content: Any, redact: Redact) -> Any:
    if isinstance(content, str):
        return redact(content)
    if not isinstance(content, list):
        return _copy(content)
    parts: list[Any] = []
    for part in content:
        if isinstance(part, str):
            parts.append(redact(part))
        elif isinstance(part, dict):
            part = _copy(part)
            # Text parts carry "text"; refusal parts carry "refusal". Images, audio and
            # files are left alone.
            for key in ("text", "refusal"):
                if isinstance(part.get(key), str):
                    part[key] = redact(part[key])
            parts.append(part)
        else:
            parts.append(_copy(part))
    return parts


def _redact_function_call(call: Any, redact: Redact) -> Any:
    call = _copy(call)
    if isinstance(call, dict) and isinstance(call.get("arguments"), str):
        call["arguments"] = redact(call["arguments"])
    return call


def redact_message(message: Any, redact: Redact) -> Any:
    """A redacted copy of one chat message; anything not shaped like one is copied as is."""
    if not isinstance(message, dict):
        return _copy(message)
    out = {}
    for key, value in message.items():
        if key in ("content", "refusal"):
            out[key] = _redact_content(value, redact)
        elif key == "tool_calls" and isinstance(value, list):
            out[key] = [
                {**_copy(call), "function": _redact_function_call(call["function"], redact)}
                if isinstance(call, dict) and "function" in call
                else _copy(call)
                for call in value
            ]
        elif key == "function_call":  # the legacy single-call form
            out[key] = _redact_function_call(value, redact)
        else:
            out[key] = _copy(value)
    return out


def redact_messages(messages: list, redact: Redact) -> list:
    """A redacted deep copy of OpenAI chat messages; the input is never modified.

    Covers string content, the text of content parts, tool call arguments (redacted in
    the JSON string itself so their formatting is kept) and tool results.
    """
    if not isinstance(messages, list):
        return _copy(messages)
    return [redact_message(message, redact) for message in messages]


def redact_completion(body: Any, redact: Redact) -> Any:
    """A redacted copy of a `chat.completion` (or legacy `text_completion`) response."""
    if not isinstance(body, dict):
        return _copy(body)
    out = _copy(body)
    choices = out.get("choices")
    if isinstance(choices, list):
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            if "message" in choice:
                choice["message"] = redact_message(choice["message"], redact)
            if isinstance(choice.get("text"), str):
                choice["text"] = redact(choice["text"])
    return out


def redact_value(value: Any, redact: Redact) -> Any:
    """A redacted copy of any JSON-shaped value: every string in it is redacted."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {key: redact_value(item, redact) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_value(item, redact) for item in value]
    return value
