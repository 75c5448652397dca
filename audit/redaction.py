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

The rules in force travel as data (audit.row.RedactionRules: the snapshot stamps them on
every audit row) and are compiled here through one cache, `compiled_rules`, so the snapshot
and the writer thread share one compiled copy. What counts as text in a payload is
audit/payloads.py; which columns of an audit row hold free text, audit/row_text.py.

A fresh install gets default rules (e-mail, phone, card, IBAN, API keys; audit only) from
the data migration `audit/migrations/0003_default_redaction_rules.py`.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from audit.detectors import BUILT_IN, Check, Trigger
from audit.payloads import (
    GATEWAY_OWNED_BODY_FIELDS,
    Redact,
    gather_item,
    redact_messages,
    walk_item,
)
from audit.row import RedactionRules, RuleLike
from audit.row_text import gather_texts, redact_fields, withhold

try:  # Python 3.11 renamed the parser module; both expose the same structures.
    from re import _constants as _sre_constants  # type: ignore[attr-defined]  # private, untyped module
    from re import _parser as _sre_parse  # type: ignore[attr-defined]  # private, untyped module
except ImportError:  # pragma: no cover
    import sre_constants as _sre_constants
    import sre_parse as _sre_parse

logger = logging.getLogger(__name__)
MAX_PATTERN_LENGTH = 1000
UPSTREAM_SCOPE = "audit_and_upstream"
REGEX_DETECTOR = "regex"

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

    __slots__ = ("_audit", "_upstream", "has_upstream_rules", "names", "rules")

    def __init__(
        self,
        rules: RedactionRules,
        audit: Iterable[CompiledRule],
        upstream: Iterable[CompiledRule],
    ) -> None:
        self.rules = rules  # what these were compiled from: what an audit row carries
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
        sent = {k: v for k, v in body.items() if k not in GATEWAY_OWNED_BODY_FIELDS}
        texts: list[str] = []
        gather_item(None, sent, texts, protocol=True)
        rules = _rules_to_run(self._upstream, texts)
        if not rules:
            return body  # nothing to mask: no copy either
        redact = functools.partial(_run, rules)
        return {
            key: value
            if key in GATEWAY_OWNED_BODY_FIELDS
            else walk_item(key, value, redact, keys=False, protocol=True)
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
            gather_texts(fields, texts)
            rules = _rules_to_run(self._audit, texts)
        except Exception:
            # The writer must not lose the row, and must not store it unredacted either.
            logger.exception("redaction failed for %s", fields.get("request_id"))
            return withhold(fields)
        if not rules:
            return fields  # nothing to redact: stored as it came, not even copied
        return redact_fields(fields, functools.partial(_run, rules))


def compile_rules(rules: Iterable[RuleLike]) -> CompiledRules:
    """Compile the enabled ones of `rules` in the order given (callers order them by
    position), uncached: for one-off uses like the admin's preview of an unsaved rule."""
    return _compile(RedactionRules.of(rules))


def _compile(rules: RedactionRules) -> CompiledRules:
    audit: list[CompiledRule] = []
    upstream: list[CompiledRule] = []
    for spec in rules.specs:
        compiled = compile_rule(spec)
        audit.append(compiled)
        if spec.scope == UPSTREAM_SCOPE:
            upstream.append(compiled)
    return CompiledRules(rules, audit, upstream)


@functools.lru_cache(maxsize=16)
def compiled_rules(rules: RedactionRules) -> CompiledRules:
    """The compiled form of `rules`, compiled once per process whoever asks first: the
    snapshot (for the upstream copy) or the writer thread (for a row's audit copy).

    A small cache suffices: rows carry the rules of the snapshot they were served under,
    and only a configuration change makes new ones. Raises ValueError like compile_rule."""
    return _compile(rules)


def redact_row(rules: RedactionRules | None, fields: dict) -> dict:
    """A row's columns with the rules in force for it applied (see CompiledRules.audit_row);
    with no rules to go by (None) every free-text field is withheld instead, since
    whatever rules are in force might have covered it."""
    if rules is None:
        return withhold(fields)
    return compiled_rules(rules).audit_row(fields)


NO_RULES = _compile(RedactionRules(()))
