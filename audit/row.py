"""What the proxy hands the audit writer: one typed row per request, and the redaction rules
in force for it as plain data.

The rules travel as data, not as a compiled object: a `RedactionRules` is a frozen tuple of
`RuleSpec`s (what the admin saved) with a fingerprint, so a row says exactly which rules
apply to it, and the writer thread compiles them on its side through a cache keyed by that
data (audit.redaction.compiled_rules). The snapshot compiles through the same cache, so in
one process a rule set is compiled once, whichever side asks first.

Once the writer has prepared a row (redacted, sanitized: audit.store.prepare) it is a dict of
AuditEvent column values by attname: the form COPY, the spool and the dead-letter files
use. Those files can hold lines from older versions or edited by hand, which sanitizing
repairs, so that form stays a dict rather than pretending to a type it may not have.
"""

from __future__ import annotations

import hashlib
import operator
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import orjson


class RuleLike(Protocol):
    """A RedactionRule row, a RuleSpec, or any object with these (read-only is enough)."""

    @property
    def name(self) -> str: ...
    @property
    def detector(self) -> str: ...
    @property
    def pattern(self) -> str: ...
    @property
    def replacement(self) -> str: ...
    @property
    def scope(self) -> str: ...


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One redaction rule as configured (a RedactionRule row, minus its order and switch)."""

    name: str
    detector: str
    pattern: str
    replacement: str
    scope: str

    @classmethod
    def of(cls, rule: RuleLike) -> RuleSpec:
        return cls(rule.name, rule.detector, rule.pattern, rule.replacement, rule.scope)


@dataclass(frozen=True, slots=True)
class RedactionRules:
    """The enabled rules of one configuration, in the order they apply.

    Hashed by its fingerprint (a string, whose hash Python caches): the writer looks the
    compiled rules up for every row, and hashing the specs themselves each time would cost
    a few microseconds of the GIL per row.
    """

    specs: tuple[RuleSpec, ...]
    fingerprint: str = field(init=False, compare=False)

    def __post_init__(self) -> None:
        source = orjson.dumps([list(map(str, _spec_values(spec))) for spec in self.specs])
        object.__setattr__(self, "fingerprint", hashlib.sha256(source).hexdigest()[:16])

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    @classmethod
    def of(cls, rules: Iterable[RuleLike]) -> RedactionRules:
        """The enabled ones of `rules`, in the order given (callers order them by position)."""
        return cls(tuple(RuleSpec.of(rule) for rule in rules if getattr(rule, "enabled", True)))


_spec_values = operator.attrgetter("name", "detector", "pattern", "replacement", "scope")


@dataclass(slots=True, kw_only=True)
class AuditRow:
    """One request's audit row as the proxy hands it over (`audit_writer.record()`).

    The fields are AuditEvent's columns by attname, with the model's defaults; the free
    text in them is still as the client or the upstream wrote it: the writer redacts it
    with `rules`, off the response path.
    """

    request_id: str
    created_at: datetime
    tenant_id: int | None = None
    tenant_slug: str = ""
    api_key_id: int | None = None
    key_prefix: str = ""
    route_id: int | None = None
    route: str = ""
    requested_model: str = ""
    provider: str = ""
    model: str = ""
    fallback_used: bool = False
    attempts: int = 0
    stream: bool = False
    outcome: str
    status_code: int
    error_type: str = ""
    error_message: str = ""
    latency_ms: int = 0
    ttft_ms: int | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = Decimal(0)
    price_version_id: int | None = None
    prompt: Any = field(default_factory=list)  # the chat messages, as the client sent them
    response: str = ""
    attempt_log: list = field(default_factory=list)
    metadata: dict = field(default_factory=dict)
    config_version: str = ""
    # The rules in force for this request. None: unknown (the configuration could not be
    # loaded), so the writer withholds every free-text field, since whatever rules are in
    # force might have covered it. Never stored: not a column.
    rules: RedactionRules | None = None
    # The writer's mark (not a column): an attempt to write this row may have committed
    # without the writer hearing of it, so look it up by request_id before writing it again.
    unsure: bool = False

    def columns(self) -> dict[str, Any]:
        """The column values by attname (a new dict: the writer redacts it in place).

        Spelled out, not built from COLUMNS in a loop: this runs for every row on the
        writer thread, which shares the GIL with the proxy, and a dict display is several
        times cheaper than dict(zip(...)). tests/audit/test_row.py checks it against
        COLUMNS and the model."""
        return {
            "request_id": self.request_id,
            "created_at": self.created_at,
            "tenant_id": self.tenant_id,
            "tenant_slug": self.tenant_slug,
            "api_key_id": self.api_key_id,
            "key_prefix": self.key_prefix,
            "route_id": self.route_id,
            "route": self.route,
            "requested_model": self.requested_model,
            "provider": self.provider,
            "model": self.model,
            "fallback_used": self.fallback_used,
            "attempts": self.attempts,
            "stream": self.stream,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "error_type": self.error_type,
            "error_message": self.error_message,
            "latency_ms": self.latency_ms,
            "ttft_ms": self.ttft_ms,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "cached_tokens": self.cached_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "cost_usd": self.cost_usd,
            "price_version_id": self.price_version_id,
            "prompt": self.prompt,
            "response": self.response,
            "attempt_log": self.attempt_log,
            "metadata": self.metadata,
            "config_version": self.config_version,
        }


# AuditEvent's columns (tests/audit/test_row.py checks that they match the model).
COLUMNS: tuple[str, ...] = tuple(
    name for name in AuditRow.__dataclass_fields__ if name not in ("rules", "unsure")
)
