"""The proxy path: from an authenticated request to the upstream answer and its audit row.

Order of work for one request (ARCHITECTURE.md walks through it):
1. `snapshots.aget()` — the in-memory configuration (no ORM once warm).
2. `authenticate()` — key → tenant, from the snapshot.
3. `parse_chat_request()` — checks the body, keeps unknown fields for pass-through.
4. the route for (tenant, name), and the key's allow-list.
5. each target in order until one answers; a connect error, timeout, 429 or 5xx before
   the first byte reaches the client moves to the next one.
6. the answer (JSON, or SSE forwarded chunk by chunk), then one audit row handed to the
   writer queue, never written on the response path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import httpx
import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.utils import timezone

from audit.writer import audit_writer
from gateway_project.lib import errors
from gateway_project.lib.errors import GatewayError
from providers.base import Target, UpstreamError, UpstreamStreamError
from providers.registry import provider_for
from providers.tokens import estimate_prompt_tokens, estimate_tokens
from routing.chat_request import ChatRequest, parse_chat_request, read_json_body
from routing.snapshot import RouteEntry, Snapshot, snapshots
from tenants.auth import Caller, authenticate, presented_key, presented_prefix

logger = logging.getLogger(__name__)

COST_PLACES = Decimal("0.0000000001")
_clients: dict[int, httpx.AsyncClient] = {}


def upstream_client() -> httpx.AsyncClient:
    """One pooled client per event loop: connections to providers are reused."""
    loop_id = id(asyncio.get_running_loop())
    client = _clients.get(loop_id)
    if client is None or client.is_closed:
        client = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
            timeout=httpx.Timeout(60.0, connect=5.0),
        )
        _clients[loop_id] = client
    return client


@dataclass
class Exchange:
    """Everything the audit row needs, gathered while the request runs."""

    request: HttpRequest
    started: float = field(default_factory=time.perf_counter)
    created_at: datetime = field(default_factory=timezone.now)
    snapshot: Snapshot | None = None
    caller: Caller | None = None
    chat: ChatRequest | None = None
    route: RouteEntry | None = None
    target: Target | None = None
    attempts: list[dict] = field(default_factory=list)
    first_token_at: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    response_text: str = ""
    metadata: dict = field(default_factory=dict)

    @property
    def request_id(self) -> str:
        return self.request.request_id  # type: ignore[attr-defined]

    def elapsed_ms(self, since: float | None = None) -> int:
        return int(((since or time.perf_counter()) - self.started) * 1000)

    def record(self, *, outcome: str, status: int, error: GatewayError | None = None) -> None:
        snap, caller, chat, target = self.snapshot, self.caller, self.chat, self.target
        cost = Decimal(0)
        if target is not None:
            cost = target.cost(self.prompt_tokens, self.completion_tokens).quantize(COST_PLACES)
        metadata = dict(self.metadata)
        if chat is not None:
            metadata.update(chat.metadata)
        client_request_id = self.request.headers.get("x-request-id")
        if client_request_id:
            metadata["client_request_id"] = client_request_id[:200]
        limit = settings.AUDIT_MAX_TEXT_CHARS
        audit_writer.record(
            {
                "request_id": self.request_id,
                "created_at": self.created_at,
                "tenant_id": caller.tenant.id if caller else None,
                "tenant_slug": caller.tenant.slug if caller else "",
                "api_key_id": caller.key.id if caller else None,
                "key_prefix": caller.key.prefix
                if caller
                else presented_prefix(presented_key(self.request)),
                "route": self.route.name if self.route else (chat.route_name if chat else ""),
                "requested_model": chat.requested_model if chat else "",
                "provider": target.provider_name if target else "",
                "model": target.model if target else "",
                "fallback_used": len(self.attempts) > 1,
                "attempts": len(self.attempts),
                "stream": bool(chat and chat.stream),
                "outcome": outcome,
                "status_code": status,
                "error_type": (error.code or error.type) if error else "",
                "error_message": error.message[:2000] if error else "",
                "latency_ms": self.elapsed_ms(),
                "ttft_ms": self.elapsed_ms(self.first_token_at) if self.first_token_at else None,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
                "cost_usd": cost,
                # Redacted by the writer thread, off the response path.
                "prompt": chat.body.get("messages", []) if chat else [],
                "response": self.response_text[:limit],
                "attempt_log": self.attempts,
                "metadata": metadata,
                "config_version": snap.version if snap else "",
                "_redactor": snap.redaction if snap else None,
            }
        )


def _gateway_headers(exchange: Exchange) -> dict[str, str]:
    target = exchange.target
    headers = {
        "x-gateway-route": exchange.route.name if exchange.route else "",
        "x-gateway-attempts": str(len(exchange.attempts)),
        "x-gateway-fallback": "true" if len(exchange.attempts) > 1 else "false",
    }
    if target is not None:
        headers["x-gateway-provider"] = target.provider_name
        headers["x-gateway-model"] = target.model
    if exchange.snapshot is not None:
        headers["x-gateway-config-version"] = exchange.snapshot.version
    return headers


def _resolve_route(exchange: Exchange) -> RouteEntry:
    snap, caller, chat = exchange.snapshot, exchange.caller, exchange.chat
    assert snap is not None and caller is not None and chat is not None
    route = snap.route_for(caller.tenant.id, chat.route_name)
    if route is None:
        raise errors.model_not_found(chat.route_name)
    if not caller.key.may_use(route.name):
        raise errors.permission_denied(
            f"This API key may not use the model or route '{route.name}'.",
            code="model_not_allowed",
        )
    if not route.targets:
        raise errors.upstream_failed(
            f"The route '{route.name}' has no enabled targets.", status=503
        )
    return route


def _upstream_body(exchange: Exchange, target: Target) -> dict:
    chat, snap = exchange.chat, exchange.snapshot
    assert chat is not None and snap is not None
    body = dict(chat.body)
    body["model"] = target.model
    body["messages"] = snap.redaction.upstream_messages(body["messages"])
    return body


def _note_attempt(
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


def _all_failed(exchange: Exchange, last: UpstreamError | None) -> GatewayError:
    if last is not None and not last.retryable:
        # The upstream (or the translation to its format) refused the request itself, a
        # 400 say: another target would refuse it too, and the client needs the reason.
        detail = (last.body or {}).get("error") if isinstance(last.body, dict) else None
        detail = detail if isinstance(detail, dict) else {}
        status = last.status if last.status and 400 <= last.status < 500 else 502
        return GatewayError(
            status,
            str(detail.get("message") or last.message),
            type="invalid_request_error",
            code=detail.get("code") or last.kind,
            param=detail.get("param"),
            outcome="upstream_error",
        )
    tried = ", ".join(
        f"{a['provider']}/{a['model']}: {a.get('kind', 'error')}" for a in exchange.attempts
    )
    if exchange.attempts and all(a.get("kind") == "timeout" for a in exchange.attempts):
        return errors.upstream_failed(
            f"Every upstream target timed out ({tried}).", status=504, code="upstream_timeout"
        )
    return errors.upstream_failed(f"Every upstream target failed ({tried}).")


def _usage_from(exchange: Exchange, usage: object) -> None:
    if isinstance(usage, dict):
        exchange.prompt_tokens = int(usage.get("prompt_tokens") or 0)
        exchange.completion_tokens = int(usage.get("completion_tokens") or 0)


def _estimate_usage_if_missing(exchange: Exchange, usage_seen: bool) -> None:
    """Some OpenAI-compatible servers report no usage: estimate rather than bill zero."""
    if usage_seen or exchange.chat is None:
        return
    exchange.prompt_tokens = estimate_prompt_tokens(exchange.chat.body.get("messages", []))
    exchange.completion_tokens = estimate_tokens(exchange.response_text)
    exchange.metadata["usage_estimated"] = True


async def _complete(exchange: Exchange) -> HttpResponse:
    route = exchange.route
    assert route is not None
    client = upstream_client()
    last: UpstreamError | None = None
    for target in route.targets:
        started = time.perf_counter()
        try:
            result = await provider_for(target.kind).complete(
                target, _upstream_body(exchange, target), client
            )
        except UpstreamError as exc:
            _note_attempt(exchange, target, started, exc)
            last = exc
            if not exc.retryable:
                break
            continue
        _note_attempt(exchange, target, started, None)
        exchange.target = target
        exchange.first_token_at = time.perf_counter()
        usage = result.get("usage")
        _usage_from(exchange, usage)
        exchange.response_text = _completion_text(result)
        _estimate_usage_if_missing(exchange, isinstance(usage, dict))
        response = HttpResponse(orjson.dumps(result), content_type="application/json")
        for name, value in _gateway_headers(exchange).items():
            response[name] = value
        exchange.record(outcome="success", status=200)
        return response
    raise _all_failed(exchange, last)


def _completion_text(result: dict) -> str:
    parts: list[str] = []
    for choice in result.get("choices") or ():
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            parts.append(message["content"])
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            parts.append(f"[tool_call {function.get('name')}({function.get('arguments', '')})]")
    return "\n".join(parts)


async def _open_stream(exchange: Exchange) -> tuple[AsyncIterator[dict], dict]:
    """Try targets until one yields its first chunk; nothing has reached the client yet."""
    route = exchange.route
    assert route is not None
    client = upstream_client()
    last: UpstreamError | None = None
    for target in route.targets:
        started = time.perf_counter()
        stream = provider_for(target.kind).stream(target, _upstream_body(exchange, target), client)
        try:
            first = await anext(stream)
        except UpstreamError as exc:
            _note_attempt(exchange, target, started, exc)
            last = exc
            await stream.aclose()  # type: ignore[attr-defined]
            if not exc.retryable:
                break
            continue
        except (UpstreamStreamError, StopAsyncIteration) as exc:
            # Broken before anything was forwarded: still safe to try the next target.
            error = UpstreamError(str(exc) or "empty stream", kind="bad_response")
            _note_attempt(exchange, target, started, error)
            last = error
            await stream.aclose()  # type: ignore[attr-defined]
            continue
        _note_attempt(exchange, target, started, None)
        exchange.target = target
        exchange.first_token_at = time.perf_counter()
        return stream, first
    raise _all_failed(exchange, last)


def _sse(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def _relay(
    exchange: Exchange, stream: AsyncIterator[dict], first: dict
) -> AsyncIterator[bytes]:
    """Forward chunks as they arrive and write the audit row however the stream ends."""
    chat = exchange.chat
    assert chat is not None
    text: list[str] = []
    tool_args: dict[int, list[str]] = {}
    usage_seen = False
    outcome, status, failure = "cancelled", 499, None
    try:
        chunk: dict | None = first
        while chunk is not None:
            is_usage_chunk = not chunk.get("choices") and chunk.get("usage") is not None
            if chunk.get("usage"):
                usage_seen = True
                _usage_from(exchange, chunk["usage"])
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str):
                    text.append(delta["content"])
                for call in delta.get("tool_calls") or ():
                    fn = call.get("function") or {}
                    pieces = tool_args.setdefault(call.get("index", 0), [])
                    if fn.get("name"):
                        pieces.append(f"[tool_call {fn['name']}] ")
                    if fn.get("arguments"):
                        pieces.append(fn["arguments"])
            if chat.include_usage:
                yield _sse(chunk)
            elif not is_usage_chunk:
                # We asked upstream for usage; a client that did not gets no trace of it.
                chunk.pop("usage", None)
                yield _sse(chunk)
            chunk = await anext(stream, None)
        yield b"data: [DONE]\n\n"
        outcome, status = "success", 200
    except UpstreamStreamError as exc:
        failure = errors.upstream_failed(f"The upstream stream failed: {exc.message}")
        failure.code = exc.kind
        outcome, status = "upstream_error", 502
        yield _sse(failure.body())
    except (asyncio.CancelledError, GeneratorExit):
        # The client went away: Django cancels us; the row still gets written below.
        raise
    except Exception:
        logger.exception("stream relay failed")
        failure = errors.internal_error()
        outcome, status = "error", 500
        yield _sse(failure.body())
    finally:
        await stream.aclose()  # type: ignore[attr-defined]
        exchange.response_text = "".join(text) + "".join(
            "".join(parts) for _, parts in sorted(tool_args.items())
        )
        _estimate_usage_if_missing(exchange, usage_seen)
        if outcome == "cancelled":
            exchange.metadata["cancelled_after_ms"] = exchange.elapsed_ms()
        exchange.record(outcome=outcome, status=status, error=failure)


async def handle_chat_completion(request: HttpRequest) -> HttpResponse:
    exchange = Exchange(request=request)
    try:
        exchange.snapshot = await snapshots.aget()
        exchange.caller = authenticate(exchange.snapshot, request)
        exchange.chat = parse_chat_request(
            read_json_body(request), route_header=request.headers.get("x-route")
        )
        exchange.route = _resolve_route(exchange)
        if not exchange.chat.stream:
            return await _complete(exchange)
        stream, first = await _open_stream(exchange)
    except GatewayError as exc:
        exchange.record(outcome=exc.outcome, status=exc.status, error=exc)
        response = exc.response()
        for name, value in _gateway_headers(exchange).items():
            response[name] = value
        return response
    except Exception:
        logger.exception("chat completion failed")
        failure = errors.internal_error()
        exchange.record(outcome="error", status=500, error=failure)
        return failure.response()
    response = StreamingHttpResponse(
        _relay(exchange, stream, first), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for name, value in _gateway_headers(exchange).items():
        response[name] = value
    return response


async def handle_list_models(request: HttpRequest) -> HttpResponse:
    exchange = Exchange(request=request, metadata={"endpoint": "models"})
    try:
        exchange.snapshot = await snapshots.aget()
        exchange.caller = authenticate(exchange.snapshot, request)
    except GatewayError as exc:
        exchange.record(outcome=exc.outcome, status=exc.status, error=exc)
        return exc.response()
    caller = exchange.caller
    data = [
        {
            "id": route.name,
            "object": "model",
            "created": 0,
            "owned_by": caller.tenant.slug if route.tenant_id else "gateway",
        }
        for route in exchange.snapshot.routes_visible_to(caller.key)
    ]
    exchange.record(outcome="success", status=200)
    return HttpResponse(
        orjson.dumps({"object": "list", "data": data}), content_type="application/json"
    )
