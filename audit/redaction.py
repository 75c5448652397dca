"""Redaction of prompts, completions and every other text the gateway keeps or forwards,
compiled once per config snapshot.

Rules run in their configured order. Every enabled rule applies to the audit copy: each
free-text column of the row (prompt, response, metadata, error message, attempt log,
route and requested model; `audit_row`). Only rules with scope `audit_and_upstream`
also rewrite the request before it leaves for the provider, and then every string the
client sent, not just message text (`upstream_body`). This runs on every request, so
all patterns are compiled up front, a rule whose trigger character is absent from the
text costs one substring test, text without any rule left to apply is returned as the
same object (no copy), and a body is not even walked when no rule applies upstream.

Replacements are literal text: a `\\1` in a replacement is not a group reference.

`compile_rules` fails closed: a rule that cannot be compiled raises ValueError rather
than being skipped, because a skipped upstream rule would leak what it was meant to
hide. Every write path (the admin's `clean()`, the config importer) validates patterns
with `compile_pattern`, so this only happens if rows are edited behind its back. In the
same spirit, a field of the audit row whose redaction fails is withheld, never stored.

A fresh install gets default rules (e-mail, phone, card, IBAN, API keys; audit only) from
the data migration `audit/migrations/0003_default_redaction_rules.py`.
"""

from __future__ import annotations

import functools
import logging
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

logger = logging.getLogger(__name__)
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
    # Built-in detectors only: their patterns never match the separator `_SEPARATOR` and
    # their lookarounds treat it as a text boundary, so one search over many texts joined
    # by it finds a candidate exactly when one of the texts has one. A custom pattern may
    # be anchored (`^`) or match anything (`[^a]`): None, always applied text by text.
    finder: re.Pattern[str] | None = None
    prefilter: re.Pattern[str] | None = None  # see audit.detectors.Detector

    def __call__(self, text: str) -> str:
        if self.trigger is not None and not self.trigger(text):
            return text
        if self.prefilter is not None and self.prefilter.search(text) is None:
            return text
        return self.apply(text)

    def may_apply(self, joined: str) -> bool:
        """False only when no text joined into `joined` holds a candidate for this rule."""
        if self.finder is None:
            return True
        if self.trigger is not None and not self.trigger(joined):
            return False
        if self.prefilter is not None and self.prefilter.search(joined) is None:
            return False
        return self.finder.search(joined) is not None


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
        rule.name,
        detector.trigger,
        _applier(detector.pattern, rule.replacement, detector.check),
        finder=detector.pattern,
        prefilter=detector.prefilter,
    )


_SEPARATOR = "\x00"


def _rules_to_run(rules: tuple[CompiledRule, ...], texts: list[str]) -> tuple[CompiledRule, ...]:
    """The rules that may change any of `texts`, found with one search per rule over all of
    them joined, not one per text: most rows and bodies hold no PII at all, and a search
    costs about as much for ten characters as for a few hundred.

    Exact, not a heuristic: each rule is tried on what the rules before it left (their
    replacements included), as running them text by text would. After a custom pattern,
    which cannot be tried on joined texts, every later rule runs."""
    joined = _SEPARATOR.join(texts)
    chosen: list[CompiledRule] = []
    unsure = False
    for rule in rules:
        if not unsure and not rule.may_apply(joined):
            continue
        chosen.append(rule)
        if rule.finder is None:
            unsure = True
        elif not unsure:
            joined = rule(joined)
    return tuple(chosen)


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

    def upstream_body(self, body: dict) -> dict:
        """The request body to send upstream, every string the client wrote redacted.

        Not only message text: `user`, `metadata`, tool descriptions and parameter
        schemas, tool call arguments, `stop`, `response_format`... are all the client's
        words, and a rule that opted in to masking the upstream copy must cover them.
        Keys, `model` (the gateway sets it per target), protocol enums (`role`, `type`)
        and base64 payloads are left as they are. The very same dict comes back, with no
        walk at all, when no rule applies upstream: the common case costs nothing.
        """
        if not self.has_upstream_rules:
            return body
        sent = {k: v for k, v in body.items() if k not in _GATEWAY_OWNED_BODY_FIELDS}
        texts: list[str] = []
        _gather_item(None, sent, texts, protocol=True)
        rules = _rules_to_run(self._upstream, texts)
        if not rules:
            return body  # nothing to mask: no copy either
        redact = functools.partial(_run, rules)
        return {
            key: value
            if key in _GATEWAY_OWNED_BODY_FIELDS
            else _walk_item(key, value, redact, keys=False, protocol=True)
            for key, value in body.items()
        }

    def audit_row(self, fields: dict) -> dict:
        """The audit row with every free-text field redacted (see AUDIT_TEXT_FIELDS).

        Called by the writer thread, off the response path. A field whose redaction
        fails is withheld, never stored as it came: the other fields still land.
        """
        if not self._audit:
            return fields
        texts: list[str] = []
        try:
            _gather_row(fields, texts)
            rules = _rules_to_run(self._audit, texts)
        except Exception:
            # The writer must not lose the row, and must not store it unredacted either.
            logger.exception("redaction failed for %s", fields.get("request_id"))
            return withhold(fields)
        if not rules:
            return fields  # nothing to redact: stored as it came, not even copied
        return _audit_row(fields, functools.partial(_run, rules))


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


class UnknownRules:
    """Stands in for the rules when a row has none to go by (the configuration could not
    be loaded for its request): every free-text field is withheld, since whatever rules
    are in force might have covered it."""

    def audit_row(self, fields: dict) -> dict:
        return withhold(fields)


UNKNOWN_RULES = UnknownRules()


# --- OpenAI-shaped payloads -------------------------------------------------------------------
# String values that are protocol enums, not prose: a custom pattern that happened to
# match "user", "function" or "auto" must not turn a request into one the provider
# refuses. (Not inside `metadata`: there these are just the client's key names.)
_PROTOCOL_KEYS = frozenset(
    {"role", "type", "format", "detail", "tool_choice", "reasoning_effort", "service_tier"}
)
# Free-form maps of the client's own: no key in them is protocol.
_FREE_FORM_FIELDS = frozenset({"metadata"})
# Set by the gateway for each target, after redaction.
_GATEWAY_OWNED_BODY_FIELDS = frozenset({"model"})
# Content parts whose payload is base64: a pattern matching inside one finds noise, not
# words, and rewriting it would corrupt the audio or file sent upstream.
_ENCODED_PART_FIELDS = {"input_audio": "data", "file": "file_data"}


def _is_encoded(text: str) -> bool:
    """A `data:...;base64,` URL (an inline image or file): bytes, not text to redact."""
    return text.startswith("data:") and ";base64," in text[:256]


def _copy(value: Any) -> Any:
    """A deep copy of JSON-shaped data, much cheaper than copy.deepcopy."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _walk(value: Any, redact: Redact, *, keys: bool = False, protocol: bool = True) -> Any:
    """A redacted deep copy of JSON-shaped data: every string value is redacted (and every
    key too when `keys`), except base64 payloads and, when `protocol`, protocol enums.
    The input is never modified: the same body is still read by the cache and the token
    counter."""
    if isinstance(value, str):
        return value if _is_encoded(value) else redact(value)
    if isinstance(value, list):
        return [_walk(item, redact, keys=keys, protocol=protocol) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict = {}
    for key, item in value.items():
        new = _walk_item(key, item, redact, keys=keys, protocol=protocol)
        if keys and isinstance(key, str):
            key = _free_key(out, redact(key))
        out[key] = new
    return out


def _walk_item(key: Any, item: Any, redact: Redact, *, keys: bool, protocol: bool) -> Any:
    """The redacted copy of one value of a JSON object, whose key says what it is."""
    if protocol and isinstance(item, str) and key in _PROTOCOL_KEYS:
        return item
    if protocol and isinstance(item, dict) and key in _ENCODED_PART_FIELDS:
        encoded = _ENCODED_PART_FIELDS[key]
        return {
            name: _copy(part)
            if name == encoded
            else _walk_item(name, part, redact, keys=keys, protocol=protocol)
            for name, part in item.items()
        }
    return _walk(item, redact, keys=keys, protocol=protocol and key not in _FREE_FORM_FIELDS)


def _gather_item(key: Any, item: Any, out: list[str], *, protocol: bool) -> None:
    """Append to `out` every text `_walk_item(key, item, ...)` would redact, and the keys
    (more text only makes `_rules_to_run` run more rules, never fewer). A loop, not
    recursion: this runs for every row and every upstream body, so it is kept tight."""
    append = out.append
    stack = [(key, item, protocol)]
    pop, push = stack.pop, stack.append
    while stack:
        key, item, protocol = pop()
        if isinstance(item, str):
            if not (protocol and key in _PROTOCOL_KEYS) and not _is_encoded(item):
                append(item)
        elif isinstance(item, dict):
            encoded = _ENCODED_PART_FIELDS.get(key) if protocol else None
            inner = protocol and key not in _FREE_FORM_FIELDS
            for name, child in item.items():
                if isinstance(name, str):
                    append(name)
                if encoded is None or name != encoded:  # base64 payloads are not text
                    push((name, child, inner))
        elif isinstance(item, list):
            inner = protocol and key not in _FREE_FORM_FIELDS
            for child in item:
                push((None, child, inner))


def _gather_row(fields: dict, out: list[str]) -> None:
    for name in AUDIT_TEXT_FIELDS:
        value = fields.get(name)
        if isinstance(value, str) and value:
            out.append(value)
    for name in AUDIT_JSON_FIELDS:
        _gather_item(None, fields.get(name), out, protocol=name == "prompt")


def _free_key(taken: dict, key: str) -> str:
    # Two keys redacted to the same text ("[EMAIL]") must not overwrite each other.
    if key not in taken:
        return key
    suffix = 2
    while f"{key}#{suffix}" in taken:
        suffix += 1
    return f"{key}#{suffix}"


def redact_message(message: Any, redact: Redact) -> Any:
    """A redacted copy of one chat message: content, content parts, `name`, tool call
    arguments (redacted in the JSON string itself, so their formatting is kept), refusals
    and any field a newer API version adds."""
    return _walk(message, redact)


def redact_messages(messages: list, redact: Redact) -> list:
    """A redacted deep copy of OpenAI chat messages; the input is never modified."""
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
    """A redacted copy of any JSON-shaped value: every string value in it is redacted."""
    return _walk(value, redact)


# --- the audit row ----------------------------------------------------------------------------
# Every column of AuditEvent that can hold what a client wrote, or what an upstream wrote
# back (its error messages often quote the prompt). The others are the gateway's own:
# ids, the tenant slug, the key's public prefix, configured provider and model names.
AUDIT_TEXT_FIELDS = ("route", "requested_model", "error_type", "error_message", "response")
# JSON columns: every string in them. Metadata keys too: tag names are the client's.
AUDIT_JSON_FIELDS = ("prompt", "attempt_log", "metadata")
WITHHELD = "[redaction failed: withheld]"


@functools.cache
def _column_lengths() -> dict[str, int]:
    """max_length of the text columns: a replacement longer than what it hides must not
    push a row past what the database accepts."""
    from audit.models import AuditEvent

    lengths = {}
    for name in AUDIT_TEXT_FIELDS:
        length = getattr(AuditEvent._meta.get_field(name), "max_length", None)
        if length:
            lengths[name] = length
    return lengths


def _withheld(name: str, value: Any) -> Any:
    if name == "prompt":
        return [{"role": "system", "content": WITHHELD}]
    if name == "metadata":
        # The gateway's own flags (numbers, booleans) are kept; every text goes.
        kept = {
            key: item
            for key, item in (value.items() if isinstance(value, dict) else ())
            if isinstance(item, bool | int | float)
        }
        return {**kept, "redaction": "failed: withheld"}
    if name == "attempt_log":
        return [{"redaction": "failed: withheld"}] if value else []
    return WITHHELD[: _column_lengths().get(name, len(WITHHELD))] if value else value


def withhold(fields: dict) -> dict:
    """The row with every free-text field replaced by a marker (error codes are kept)."""
    for name in (*AUDIT_TEXT_FIELDS, *AUDIT_JSON_FIELDS):
        if name in fields and name != "error_type":
            fields[name] = _withheld(name, fields[name])
    return fields


def _audit_row(fields: dict, redact: Redact) -> dict:
    lengths = _column_lengths()
    for name in (*AUDIT_TEXT_FIELDS, *AUDIT_JSON_FIELDS):
        value = fields.get(name)
        if not value:
            continue
        try:
            if isinstance(value, str):
                value = redact(value)
                limit = lengths.get(name)
                fields[name] = value[:limit] if limit else value
            else:
                free_form = name != "prompt"  # the prompt is protocol; the rest is ours
                fields[name] = _walk(value, redact, keys=name == "metadata", protocol=not free_form)
        except Exception:
            # Never store what could not be redacted.
            logger.exception("redaction of %s failed for %s", name, fields.get("request_id"))
            fields[name] = _withheld(name, value)
    return fields
