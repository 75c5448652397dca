"""The state of one proxied request, and the audit row it becomes."""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.http import HttpRequest

from audit.row import AuditRow
from audit.writer import audit_writer
from billing.admission import Guard, settle
from billing.counters import Admission, GovernanceUnavailable, governor
from gateway_project.lib import after_response
from gateway_project.lib.errors import GatewayError
from providers.base import Price, Target, UpstreamError
from providers.tokens import estimate_prompt_tokens, estimate_tokens, prompt_calibration
from routing.proxy import tracing
from routing.proxy.finished import request_finished
from routing.proxy.request import ChatRequest
from routing.snapshot import RouteEntry, Snapshot
from tenants.auth import Caller, presented_key, presented_prefix

COST_PLACES = Decimal("0.0000000001")
logger = logging.getLogger(__name__)
_renewals: set[asyncio.Future] = set()  # reservation renewals in flight (kept from the GC)


@dataclass
class Exchange:
    """Everything the audit row needs, gathered while the request runs."""

    request: HttpRequest
    started: float = field(default_factory=time.perf_counter)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    snapshot: Snapshot | None = None
    caller: Caller | None = None
    chat: ChatRequest | None = None
    route: RouteEntry | None = None
    target: Target | None = None
    attempts: list[dict] = field(default_factory=list)
    first_token_at: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of the prompt tokens, as the upstream reported them
    reasoning_tokens: int = 0  # of the completion tokens
    response_text: str = ""
    metadata: dict = field(default_factory=dict)
    guard: Guard | None = None
    prompt: list | None = None  # what the row keeps as the prompt, when not chat messages
    trace: tracing.RequestTrace | None = None  # its spans, when tracing is on (tracing.py)

    @property
    def request_id(self) -> str:
        return self.request.request_id  # type: ignore[attr-defined]  # RequestIdMiddleware's

    def elapsed_ms(self, since: float | None = None) -> int:
        return int(((since or time.perf_counter()) - self.started) * 1000)

    @property
    def upstream_attempts(self) -> int:
        """Calls actually made upstream (a target skipped for its open circuit is not one)."""
        return sum(1 for attempt in self.attempts if not attempt.get("skipped"))

    @property
    def fell_back(self) -> bool:
        """Whether anything but the first target in order was (or had to be) tried."""
        targets = {(a["provider"], a["model"]) for a in self.attempts}
        return len(targets) > 1 or any(a.get("skipped") for a in self.attempts)

    @property
    def price(self) -> Price | None:
        """The price book's version in force at the request's start."""
        return self.target.price_at(self.created_at) if self.target is not None else None

    @property
    def cost(self) -> Decimal:
        price = self.price
        if price is None:
            return Decimal(0)
        cost = price.cost(self.prompt_tokens, self.completion_tokens, self.cached_tokens)
        return cost.quantize(COST_PLACES)

    def record(self, *, outcome: str, status: int, error: GatewayError | None = None) -> None:
        """The request is over: tell its watchers (finished.py), then queue its audit row."""
        row = self.audit_row(outcome=outcome, status=status, error=error)
        request_finished(row)
        if self.trace is not None:
            tracing.end_request(self, row)
        logger.debug(
            "request finished: %s %d in %d ms (%s/%s, %d attempts)",
            outcome,
            status,
            row.latency_ms,
            row.provider or "-",
            row.model or "-",
            row.attempts,
        )
        if settings.AUDIT_ENABLED:
            audit_writer.record(row)

    def audit_row(self, *, outcome: str, status: int, error: GatewayError | None) -> AuditRow:
        snap, caller, chat, target = self.snapshot, self.caller, self.chat, self.target
        price = self.price
        cost = self.cost
        metadata = dict(self.metadata)
        if chat is not None:
            metadata.update(chat.metadata)
        client_request_id = self.request.headers.get("x-request-id")
        if client_request_id:
            metadata["client_request_id"] = client_request_id[:200]
        limit = settings.AUDIT_MAX_TEXT_CHARS
        return AuditRow(
            request_id=self.request_id,
            created_at=self.created_at,
            tenant_id=caller.tenant.id if caller else None,
            tenant_slug=caller.tenant.slug if caller else "",
            api_key_id=caller.key.id if caller else None,
            key_prefix=caller.key.prefix
            if caller
            else presented_prefix(presented_key(self.request)),
            route_id=self.route.id if self.route else None,
            route=self.route.name if self.route else (chat.route_name if chat else ""),
            requested_model=chat.requested_model if chat else "",
            provider=target.provider_name if target else "",
            model=target.model if target else "",
            fallback_used=self.fell_back,
            attempts=self.upstream_attempts,
            stream=bool(chat and chat.stream),
            outcome=outcome,
            status_code=status,
            error_type=(error.code or error.type) if error else "",
            error_message=error.message[:2000] if error else "",
            latency_ms=self.elapsed_ms(),
            ttft_ms=self.elapsed_ms(self.first_token_at) if self.first_token_at else None,
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
            total_tokens=self.prompt_tokens + self.completion_tokens,
            cached_tokens=self.cached_tokens,
            reasoning_tokens=self.reasoning_tokens,
            cost_usd=cost,
            price_version_id=price.version_id if price else None,
            # Redacted by the writer thread, off the response path.
            prompt=self.prompt
            if self.prompt is not None
            else (chat.body.get("messages", []) if chat else []),
            response=self.response_text[:limit],
            attempt_log=self.attempts,
            metadata=metadata,
            config_version=snap.version if snap else "",
            # No snapshot, no rules to go by (None): the writer withholds the free text.
            rules=snap.redaction.rules if snap else None,
        )


def gateway_headers(exchange: Exchange) -> dict[str, str]:
    target = exchange.target
    headers = {
        "x-gateway-route": exchange.route.name if exchange.route else "",
        "x-gateway-attempts": str(exchange.upstream_attempts),
        "x-gateway-fallback": "true" if exchange.fell_back else "false",
    }
    if target is not None:
        headers["x-gateway-provider"] = target.provider_name
        headers["x-gateway-model"] = target.model
    if exchange.snapshot is not None:
        headers["x-gateway-config-version"] = exchange.snapshot.version
    guard = exchange.guard
    if guard is not None and guard.admission is not None:
        headers.update(guard.admission.headers)
    return headers


def note_attempt(
    exchange: Exchange, target: Target, started: float, error: Exception | None
) -> None:
    entry: dict = {
        "provider": target.provider_name,
        "model": target.model,
        "ms": int((time.perf_counter() - started) * 1000),
        "ok": error is None,
    }
    if isinstance(error, UpstreamError):
        entry.update(kind=error.kind, status=error.status, error=error.message[:500])
    elif error is not None:
        entry.update(kind="error", error=str(error)[:500])
    exchange.attempts.append(entry)


# What a token count reported by an upstream may be: the audit row's column holds no more,
# and a count outside this range is an upstream's bug, not usage.
MAX_REPORTED_TOKENS = 2**31 - 1


def _reported_tokens(exchange: Exchange, name: str, value: object) -> int:
    """One reported token count, made billable: a negative, absurd or non-numeric count
    must neither credit a budget (negative cost) nor bill more than the row can record,
    so the counter and the ledger agree. What the upstream said is kept on the row."""
    try:
        count = int(value or 0)  # type: ignore[call-overload]  # any type: the errors are caught
    except (TypeError, ValueError, OverflowError):
        count = -1
    if 0 <= count <= MAX_REPORTED_TOKENS:
        return count
    exchange.metadata.setdefault("usage_reported_out_of_range", {})[name] = str(value)[:40]
    return min(max(count, 0), MAX_REPORTED_TOKENS)


def _detail(usage: dict, part: str, name: str) -> object:
    details = usage.get(part)
    return details.get(name) if isinstance(details, dict) else 0


def usage_from(exchange: Exchange, usage: object) -> None:
    """The usage an upstream reported, OpenAI's shape (the Anthropic adapter reports its
    cache reads as `prompt_tokens_details.cached_tokens`)."""
    if isinstance(usage, dict):
        exchange.prompt_tokens = _reported_tokens(
            exchange, "prompt_tokens", usage.get("prompt_tokens")
        )
        exchange.completion_tokens = _reported_tokens(
            exchange, "completion_tokens", usage.get("completion_tokens")
        )
        exchange.cached_tokens = _reported_tokens(
            exchange, "cached_tokens", _detail(usage, "prompt_tokens_details", "cached_tokens")
        )
        exchange.reasoning_tokens = _reported_tokens(
            exchange,
            "reasoning_tokens",
            _detail(usage, "completion_tokens_details", "reasoning_tokens"),
        )


def estimate_usage_if_missing(exchange: Exchange, usage_seen: bool) -> None:
    """Some OpenAI-compatible servers report no usage: estimate rather than bill zero."""
    if usage_seen or exchange.chat is None:
        return
    exchange.prompt_tokens = estimate_prompt_tokens(exchange.chat.body.get("messages", []))
    exchange.completion_tokens = estimate_tokens(exchange.response_text)
    exchange.metadata["usage_estimated"] = True


async def settle_after_response(exchange: Exchange) -> None:
    """Settle once the answer has been sent (the client does not wait for the Redis round
    trip), or at once where the server cannot defer it (gateway_project/lib/after_response)."""
    if exchange.guard is not None and exchange.guard.admission is not None:
        await after_response.defer(functools.partial(settle_exchange, exchange))


def settle_detached(exchange: Exchange) -> asyncio.Future:
    """Start settling now, on its own (the client left): the settlement runs to the end
    whatever is cancelled around the caller, and a graceful shutdown waits for it."""
    return after_response.start([functools.partial(settle_exchange, exchange)])


async def settle_exchange(exchange: Exchange) -> None:
    guard = exchange.guard
    if guard is not None and guard.admission is not None:
        with tracing.stage(exchange, "gateway.settlement"):
            _calibrate(exchange, guard)
            await settle(
                guard.admission,
                tokens=exchange.prompt_tokens + exchange.completion_tokens,
                cost=exchange.cost,
            )


def _calibrate(exchange: Exchange, guard: Guard) -> None:
    """Teach the prompt estimate what this target really billed (its own report only: an
    estimate of ours, or a cached answer, says nothing about the upstream)."""
    target = exchange.target
    if target is None or exchange.metadata.get("usage_estimated"):
        return
    if exchange.metadata.get("cache", "miss") != "miss":
        return
    prompt_calibration.observe(
        target.key,
        counted_with=guard.counted_with,
        counted=guard.prompt_tokens,
        billed=exchange.prompt_tokens,
    )


def idle_wait_s(target: Target) -> float:
    """How long a started stream may go silent before the proxy gives up on it."""
    return target.stream_idle_timeout_s or target.timeout_s


def hold_reservation(exchange: Exchange) -> None:
    """A stream has no total deadline: while it keeps sending, keep its reservation held
    for one more idle interval plus the margin. Called on every chunk; it costs a round
    trip (off the stream's path) only once the reservation's expiry comes within half a
    margin of that, so about once per half margin of a long stream and never for a short
    one (its admission already held the first idle interval)."""
    guard, target = exchange.guard, exchange.target
    admission = guard.admission if guard is not None else None
    if admission is None or target is None or admission.settled or not admission.budgets:
        return
    hold = idle_wait_s(target) + settings.GATEWAY_RESERVATION_MARGIN_SECONDS
    now_ms = time.time() * 1000
    if (
        admission.expires_at_ms
        > now_ms + (hold - settings.GATEWAY_RESERVATION_MARGIN_SECONDS / 2) * 1000
    ):
        return
    # Counted as done now, so that the chunks arriving meanwhile do not ask again.
    admission.expires_at_ms = int(now_ms + hold * 1000)
    task = asyncio.ensure_future(_renew(admission, hold))
    _renewals.add(task)
    task.add_done_callback(_renewals.discard)


async def _renew(admission: Admission, hold_seconds: float) -> None:
    try:
        await governor.renew(admission, hold_seconds=hold_seconds)
    except GovernanceUnavailable as exc:
        # The stream goes on; its reservation may lapse, and the spend is still settled.
        logger.warning("could not extend the reservation of %s: %s", admission.request_id, exc)
    except Exception:
        logger.exception("could not extend the reservation of %s", admission.request_id)
