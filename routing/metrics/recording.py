"""What one finished request adds to the metrics: `record(row)`, called with its audit row
by routing/proxy/finished.py on the response path.

It reads the row's counts, names and timings, never its text, and it never raises: a
failure is logged (at most once a minute) and the request goes on. Its cost per request is
in bench/README.md ("Metrics"); the labelled children are cached here because
prometheus_client's `labels()` converts, checks and locks on every call.
"""

from __future__ import annotations

import logging
import re
import time
from itertools import chain
from typing import Any

from django.conf import settings

from audit.row import AuditRow
from routing.metrics import instruments as m
from routing.metrics import sampler
from routing.metrics.instruments import OTHER
from routing.snapshot import snapshots

logger = logging.getLogger(__name__)

# The endpoints as the audit row names them (metadata "endpoint"; none: chat completions),
# and the GenAI operation of those that call a model.
ENDPOINTS = frozenset(
    (
        "chat",
        "messages",
        "messages.count_tokens",
        "responses",
        "embeddings",
        "models",
        "models.retrieve",
    )
)
OPERATIONS = {"chat": "chat", "messages": "chat", "responses": "chat", "embeddings": "embeddings"}
# The conventions' well-known gen_ai.provider.name for our provider kinds; other kinds
# (openai_compatible, stub) are named as they are.
PROVIDER_NAMES = {"openai": "openai", "azure_openai": "azure.ai.openai", "anthropic": "anthropic"}
REFUSALS = {
    "rate_limit_exceeded": "rate_limit",
    "insufficient_quota": "budget",
    "governance_unavailable": "governance_unavailable",
}
CACHE_RESULTS = frozenset(("exact", "semantic", "miss"))
# The error codes of a failed upstream call that the gateway itself names (the rest are
# the upstream's own, which could be anything: _OTHER).
UPSTREAM_ERRORS = frozenset(
    (
        "upstream_error",
        "upstream_timeout",
        "circuit_open",
        "no_target_left",
        "client_error",
        "server_error",
        "rate_limited",
        "timeout",
        "connect_error",
        "bad_response",
        "stream_error",
        "truncated",
        "malformed_chunk",
        "upstream_error_event",
        "connection_lost",
    )
)
GATEWAY_CODE = re.compile(r"[a-z_]{1,40}")
COMPLAIN_EVERY_SECONDS = 60.0


class _Children:
    """One metric's labelled children, by their label values."""

    __slots__ = ("cache", "metric")

    def __init__(self, metric: Any) -> None:
        self.metric = metric
        self.cache: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self.cache.get(labels)
        if child is None:
            child = self.cache[labels] = self.metric.labels(*labels)
        return child


token_usage = _Children(m.token_usage)
request_duration = _Children(m.request_duration)
time_to_first_token = _Children(m.time_to_first_token)
time_per_output_token = _Children(m.time_per_output_token)
requests = _Children(m.requests)
tokens = _Children(m.tokens)
cost = _Children(m.cost)
cache_lookups = _Children(m.cache_lookups)
fallbacks = _Children(m.fallbacks)
retries = _Children(m.retries)
refusals = _Children(m.refusals)


class _ProviderNames:
    """gen_ai.provider.name of a configured provider, from its kind in the snapshot (the
    row names the provider, not its kind). Forgotten when the configuration changes."""

    def __init__(self) -> None:
        self.version = ""
        self.names: dict[str, str] = {}

    def of(self, provider: str, version: str) -> str:
        if version != self.version:
            self.version, self.names = version, {}
        name = self.names.get(provider)
        if name is None:
            name = self.names[provider] = self._look_up(provider)
        return name

    @staticmethod
    def _look_up(provider: str) -> str:
        snap = snapshots.current
        if snap is None:
            return OTHER
        routes = chain(snap.global_routes.values(), snap.tenant_routes.values())
        for route in routes:
            for target in route.targets:
                if target.provider_name == provider:
                    return PROVIDER_NAMES.get(target.kind, target.kind)
        return OTHER


provider_names = _ProviderNames()
_last_complaint = float("-inf")


def record(row: AuditRow) -> None:
    """Count one finished request. Never raises."""
    global _last_complaint
    if not settings.GATEWAY_METRICS_ENABLED:
        return
    try:
        sampler.ensure_started()
        _record(row)
    except Exception:
        now = time.monotonic()
        if now - _last_complaint >= COMPLAIN_EVERY_SECONDS:
            _last_complaint = now
            logger.exception("metrics: could not record request %s", row.request_id)


def _record(row: AuditRow) -> None:
    tenant = row.tenant_slug if row.tenant_id is not None else ""
    route = row.route if row.route_id is not None else (OTHER if row.route else "")
    key = row.key_prefix if settings.GATEWAY_METRICS_KEY_LABEL and row.api_key_id else ""
    endpoint = row.metadata.get("endpoint") or "chat"
    endpoint = endpoint if endpoint in ENDPOINTS else OTHER
    provider, model = row.provider, row.model
    status = str(row.status_code)
    requests(tenant, route, endpoint, provider, model, status, row.outcome, key).inc()
    cache = row.metadata.get("cache")
    if cache in CACHE_RESULTS:
        cache_lookups(tenant, route, cache).inc()
    if cache in (None, "miss"):  # a cached answer was billed by nobody
        if row.prompt_tokens:
            tokens(tenant, route, provider, model, "input", key).inc(row.prompt_tokens)
        if row.completion_tokens:
            tokens(tenant, route, provider, model, "output", key).inc(row.completion_tokens)
    if row.cost_usd:
        cost(tenant, route, provider, model, key).inc(float(row.cost_usd))
    if row.fallback_used:
        fallbacks(tenant, route).inc()
    if row.attempts > 1:
        repeated = _repeated_calls(row.attempt_log)
        if repeated:
            retries(tenant, route).inc(repeated)
    if row.outcome == "rejected":
        reason = REFUSALS.get(row.error_type)
        if reason is not None:
            refusals(tenant, route, reason, key).inc()
    operation = OPERATIONS.get(endpoint)
    if operation is not None:
        _record_genai(row, operation)


def _record_genai(row: AuditRow, operation: str) -> None:
    """The conventions' metrics, for requests that reached a model (a target was called)."""
    provider, model = row.provider, row.model
    if not provider:
        if not row.attempt_log:
            return  # refused, or answered from the cache: no model was asked
        last = row.attempt_log[-1]  # every target failed: the one tried last
        provider, model = last.get("provider") or "", last.get("model") or ""
        if not provider:
            return
    asked = row.requested_model
    if asked and asked != model and not (row.route_id is not None and asked == row.route):
        asked = OTHER  # a name the client made up: not a label value
    labels = (operation, provider_names.of(provider, row.config_version), asked, model)
    request_duration(*labels, _error_type(row)).observe(row.latency_ms / 1000)
    if row.outcome not in ("success", "cancelled"):
        return  # nothing billed
    token_usage(*labels, "input").observe(row.prompt_tokens)
    if operation == "chat":
        token_usage(*labels, "output").observe(row.completion_tokens)
    if row.outcome == "success" and row.stream and row.ttft_ms is not None:
        # Streams only: a whole answer's first token arrives with its last.
        time_to_first_token(*labels).observe(row.ttft_ms / 1000)
        if row.completion_tokens > 1 and row.latency_ms > row.ttft_ms:
            per_token = (row.latency_ms - row.ttft_ms) / 1000 / (row.completion_tokens - 1)
            time_per_output_token(*labels).observe(per_token)


def _error_type(row: AuditRow) -> str:
    """error.type: the gateway's own error code ("" for a success)."""
    code = row.error_type
    if not code:
        return "cancelled" if row.outcome == "cancelled" else ""
    if row.outcome == "upstream_error":
        return code if code in UPSTREAM_ERRORS else OTHER
    return code if GATEWAY_CODE.fullmatch(code) else OTHER


def _repeated_calls(attempt_log: list) -> int:
    """Calls made to a target already called for this request (retries), not counting
    targets skipped for their open circuit."""
    called = [(a.get("provider"), a.get("model")) for a in attempt_log if not a.get("skipped")]
    return len(called) - len(set(called))
