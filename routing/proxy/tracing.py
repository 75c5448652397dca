"""The spans of one proxy request (OpenTelemetry's GenAI conventions), made at its stages.

The tree, for every endpoint that runs the stages (handler.serve_recorded):

    chat <route>                    SERVER, the request; a child of the client's
    |                               `traceparent` when it sent one
    +- gateway.admission            policies, rate limits and budgets (a refusal: error)
    +- chat <model>                 CLIENT, one per upstream attempt: fallback index,
    +- chat <model>                   attempt number, provider, model, error kind/status
    +- gateway.settlement           after the response was sent (it may start after its
                                    parent ended)

The request span is named `{gen_ai.operation.name} {gen_ai.request.model}` (the route the
client asked for) and ends when the request's audit row is recorded (`end_request`,
from Exchange.record): for a stream, at its last chunk, with the winning attempt's span.

Every function here returns at once, having made nothing, when tracing is off: only
`start_request` reads the flag (`tracing.ENABLED`); the others find no `exchange.trace`.
What a span never holds: the prompt, the answer, or an upstream's error message (they
quote the prompt): an error is its kind and status. GATEWAY_TRACE_CONTENT opts in to the
prompt and answer, as the audit rules redact them (`_content`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import urllib.parse
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson
from opentelemetry import propagate
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, set_span_in_context

from audit.redaction import redact_row
from gateway_project.lib import tracing
from gateway_project.lib.errors import GatewayError
from providers.base import Target, UpstreamError

if TYPE_CHECKING:
    from audit.row import AuditRow
    from routing.proxy.exchange import Exchange

logger = logging.getLogger(__name__)
_NOTHING = contextlib.nullcontext()  # what a stage enters when its request has no span
_NO_PARENT = Context()  # a request's own trace when the client sent none (not the current one)
# gen_ai.provider.name by adapter kind, the conventions' names where they have one.
PROVIDER_NAMES = {"openai": "openai", "azure_openai": "azure.ai.openai", "anthropic": "anthropic"}


class RequestTrace:
    """The request's span, the context its children hang from, and what the answer told
    about itself (only ever made when tracing is on)."""

    __slots__ = ("context", "ended", "finish_reasons", "open_attempt", "response_model", "span")

    def __init__(self, span: Span, context: Context) -> None:
        self.span = span
        self.context = context
        self.open_attempt: Span | None = None  # a stream's winning attempt, still reading
        self.finish_reasons: list[str] = []
        self.response_model = ""
        self.ended = False

    def take(self, answer: Mapping[str, Any]) -> None:
        """Finish reasons and model from an answer or a stream's chunk (OpenAI's shape, or
        Anthropic's for its native pass-through)."""
        model = answer.get("model")
        if isinstance(model, str) and not self.response_model:
            self.response_model = model[:200]
        for choice in answer.get("choices") or ():
            reason = choice.get("finish_reason") if isinstance(choice, dict) else None
            if isinstance(reason, str) and reason:
                self.finish_reasons.append(reason[:64])
        delta = answer.get("delta")
        reason = delta.get("stop_reason") if isinstance(delta, dict) else answer.get("stop_reason")
        if isinstance(reason, str) and reason:
            self.finish_reasons.append(reason[:64])


def operation(exchange: Exchange) -> str:
    return "embeddings" if exchange.metadata.get("endpoint") == "embeddings" else "chat"


@functools.cache
def _propagation_keys() -> tuple[str, ...]:
    """The request META keys of the headers the configured propagators read (OTEL_PROPAGATORS;
    by default traceparent, tracestate, baggage)."""
    fields = propagate.get_global_textmap().fields
    return tuple("HTTP_" + field.upper().replace("-", "_") for field in fields)


def _propagated(meta: Mapping[str, Any]) -> bool:
    """Whether the client sent any trace context at all: most send none, and extracting
    nothing through the propagators still cost about 8 us."""
    return any(key in meta for key in _propagation_keys())


def start_request(exchange: Exchange) -> None:
    """The request's span, as a child of the client's `traceparent` if it sent one."""
    if not tracing.ENABLED or tracing.tracer is None:
        return
    request = exchange.request
    parent = propagate.extract(request.headers) if _propagated(request.META) else _NO_PARENT
    name = operation(exchange)
    span = tracing.tracer.start_span(
        name,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={
            "gen_ai.operation.name": name,
            "gateway.request_id": exchange.request_id,
            "gateway.endpoint": exchange.metadata.get("endpoint", "chat"),
            "http.request.method": request.method or "",
            "url.path": request.path,
        },
    )
    context = set_span_in_context(span, parent)
    if span.is_recording():
        exchange.trace = RequestTrace(span, context)
        return
    # Sampled out (OTEL_TRACES_SAMPLER): no spans below it, which would be sampled out as
    # well, but every provider call still carries the trace and its decision.
    headers: dict[str, str] = {}
    propagate.inject(headers, context=context)
    tracing.upstream_headers.set(headers)  # this request's task, and the tasks it starts


def answered(exchange: Exchange, answer: Mapping[str, Any]) -> None:
    """A whole answer's finish reasons and model (a stream's chunks: `RequestTrace.take`)."""
    if exchange.trace is not None:
        exchange.trace.take(answer)


def _failed(span: Span, exc: BaseException) -> None:
    """An error's kind on a span: never its message, which may quote the prompt."""
    if isinstance(exc, GatewayError):
        kind = exc.code or exc.type
        span.set_attributes(
            {"gateway.outcome": exc.outcome, "http.response.status_code": exc.status}
        )
    elif isinstance(exc, UpstreamError):
        kind = exc.kind
        if exc.status:
            span.set_attribute("http.response.status_code", exc.status)
    elif isinstance(exc, asyncio.CancelledError | GeneratorExit):
        kind = "cancelled"
    else:
        kind = type(exc).__qualname__
    span.set_attribute("error.type", kind)
    span.set_status(Status(StatusCode.ERROR, kind))


class _Stage:
    __slots__ = ("span",)

    def __init__(self, span: Span) -> None:
        self.span = span

    def __enter__(self) -> Span:
        return self.span

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        if exc is not None:
            _failed(self.span, exc)
        self.span.end()


def stage(exchange: Exchange, name: str) -> contextlib.AbstractContextManager:
    """A span around one stage of the request (`gateway.admission`, `gateway.settlement`)."""
    trace = exchange.trace
    if trace is None or tracing.tracer is None:
        return _NOTHING
    return _Stage(tracing.tracer.start_span(name, context=trace.context))


@functools.lru_cache(maxsize=256)
def _server(base_url: str) -> dict[str, str | int]:
    parts = urllib.parse.urlsplit(base_url)
    if not parts.hostname:
        return {}
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {"server.address": parts.hostname, "server.port": port}


class _Attempt:
    """One upstream attempt's CLIENT span, and its context as the headers every upstream
    request built meanwhile carries (providers/calls.py reads `tracing.upstream_headers`)."""

    __slots__ = ("keep_open", "span", "token", "trace")

    def __init__(self, trace: RequestTrace, span: Span, *, keep_open: bool) -> None:
        self.trace = trace
        self.span = span
        self.keep_open = keep_open

    def __enter__(self) -> Span:
        headers: dict[str, str] = {}
        propagate.inject(headers, context=set_span_in_context(self.span, self.trace.context))
        self.token = tracing.upstream_headers.set(headers)
        return self.span

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        tracing.upstream_headers.reset(self.token)
        if exc is not None:
            _failed(self.span, exc)
        elif self.keep_open:  # a stream: its span lasts until the last chunk is read
            if self.trace.open_attempt is not None:
                self.trace.open_attempt.end()
            self.trace.open_attempt = self.span
            return
        self.span.end()


def attempt(
    exchange: Exchange, target: Target, *, index: int, number: int
) -> contextlib.AbstractContextManager:
    """A span around one call to `target`: the `index`-th target in the route's order
    (0: the first; fallback past it), `number`-th try of it (1: not a retry)."""
    trace = exchange.trace
    if trace is None or tracing.tracer is None:
        return _NOTHING
    name = operation(exchange)
    span = tracing.tracer.start_span(
        f"{name} {target.model}",
        context=trace.context,
        kind=SpanKind.CLIENT,
        attributes={
            "gen_ai.operation.name": name,
            "gen_ai.provider.name": PROVIDER_NAMES.get(target.kind, target.kind),
            "gen_ai.request.model": target.model,
            "gateway.provider": target.provider_name,
            "gateway.attempt.fallback_index": index,
            "gateway.attempt.number": number,
            **_server(target.base_url),
        },
    )
    stream = exchange.chat is not None and exchange.chat.stream
    return _Attempt(trace, span, keep_open=stream)


def end_request(exchange: Exchange, row: AuditRow) -> None:
    """The request is over (its audit row is made): its outcome on its span, which ends.
    Never raises: a tracing failure must not cost the caller its answer."""
    trace = exchange.trace
    if trace is None or trace.ended:
        return
    trace.ended = True
    try:
        _finish(exchange, trace, row)
    except Exception:
        logger.warning("could not finish the request's span", exc_info=True)


def _finish(exchange: Exchange, trace: RequestTrace, row: AuditRow) -> None:
    span, route, target = trace.span, exchange.route, exchange.target
    attributes: dict[str, Any] = {
        "gateway.outcome": row.outcome,
        "http.response.status_code": row.status_code,
        "gateway.fallback": row.fallback_used,
        "gateway.attempts": row.attempts,
        "gateway.stream": row.stream,
        "gen_ai.usage.input_tokens": row.prompt_tokens,
        "gen_ai.usage.output_tokens": row.completion_tokens,
        "gateway.cost_usd": str(row.cost_usd),
    }
    if row.tenant_slug:
        attributes["gateway.tenant"] = row.tenant_slug
    if route is not None:  # the configured name: never the client's own text
        span.update_name(f"{operation(exchange)} {route.name}")
        attributes["gen_ai.request.model"] = attributes["gateway.route"] = route.name
    if target is not None:
        attributes["gen_ai.provider.name"] = PROVIDER_NAMES.get(target.kind, target.kind)
        attributes["gen_ai.response.model"] = trace.response_model or target.model
        attributes["gateway.provider"] = target.provider_name
    if trace.finish_reasons:
        attributes["gen_ai.response.finish_reasons"] = tuple(trace.finish_reasons)
    if "cache" in exchange.metadata:
        attributes["gateway.cache"] = str(exchange.metadata["cache"])
    if tracing.CAPTURE_CONTENT:
        attributes.update(_content(exchange, row))
    span.set_attributes(attributes)
    for skipped in (a for a in row.attempt_log if a.get("skipped")):
        span.add_event(
            "gateway.target_skipped",
            {"gateway.provider": skipped["provider"], "gen_ai.request.model": skipped["model"]},
        )
    if row.outcome != "success":
        kind = row.error_type or row.outcome
        span.set_attribute("error.type", kind)
        span.set_status(Status(StatusCode.ERROR, kind))
    if trace.open_attempt is not None:
        if row.outcome != "success":
            trace.open_attempt.set_status(Status(StatusCode.ERROR, row.outcome))
        trace.open_attempt.end()
        trace.open_attempt = None
    span.end()


def _parts(messages: object) -> list:
    """Chat messages in the conventions' shape: a role and its parts."""
    if not isinstance(messages, list):
        return [{"role": "user", "parts": [{"type": "text", "content": messages}]}]
    shaped = []
    for message in messages:
        if not isinstance(message, dict):
            continue
        content = message.get("content")
        parts = [{"type": "text", "content": content}] if isinstance(content, str) else content
        shaped.append({"role": message.get("role"), "parts": parts or []})
    return shaped


def _content(exchange: Exchange, row: AuditRow) -> dict[str, str]:
    """The prompt and answer for a span (opted in), redacted as the audit row will be;
    withheld where the rules are unknown or fail (audit/redaction.py)."""
    fields = redact_row(row.rules, {"prompt": row.prompt, "response": row.response})
    output = [{"role": "assistant", "parts": [{"type": "text", "content": fields["response"]}]}]
    return {
        "gen_ai.input.messages": orjson.dumps(_parts(fields["prompt"])).decode(),
        "gen_ai.output.messages": orjson.dumps(output).decode(),
    }
