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
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import TypeVar

import httpx
import orjson
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from billing.enforcement import (
    Guard,
    admit,
    check_policy,
    output_cap,
    requested_output_cap,
    settle,
)
from gateway_project.lib import errors
from gateway_project.lib.errors import GatewayError
from providers.base import Target, UpstreamError, UpstreamStreamError
from providers.circuit import breaker as circuit_breaker
from providers.registry import provider_for
from providers.tokens import count_prompt_tokens
from routing import cache as response_cache
from routing.attempts import may_retry, retry_budget
from routing.chat_request import parse_chat_request, read_json_body
from routing.exchange import (
    Exchange,
    estimate_usage_if_missing,
    gateway_headers,
    note_attempt,
    usage_from,
)
from routing.snapshot import RouteEntry, snapshots
from routing.strategies import latency_tracker, order_targets
from tenants.auth import authenticate

logger = logging.getLogger(__name__)
T = TypeVar("T")
_background: set[asyncio.Future] = set()  # cache writes in flight (kept from the GC)

# Upstream kinds that want the newer output-cap field when the gateway has to set one.
_COMPLETION_TOKENS_KINDS = frozenset({"openai", "azure_openai"})
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


async def _govern(exchange: Exchange, body_bytes: int) -> None:
    """Policies, then rate limits and budgets in one atomic admission (or a refusal)."""
    snap, caller, chat, route = exchange.snapshot, exchange.caller, exchange.chat, exchange.route
    assert snap is not None and caller is not None and chat is not None and route is not None
    governance = snap.governance
    limits = governance.limits_for(
        tenant_id=caller.tenant.id, key_id=caller.key.id, route_id=route.id, route_name=route.name
    )
    budgets = governance.budgets_for(
        tenant_id=caller.tenant.id, key_id=caller.key.id, route_id=route.id
    )
    policy = caller.key.policy
    # Counting tokens costs CPU: only when something needs the number before the call.
    needs_count = (
        bool(budgets)
        or policy.max_prompt_tokens is not None
        or any(limit.tpm is not None for limit in limits)
    )
    prompt_tokens = (
        count_prompt_tokens(chat.body["messages"], route.targets[0].kind) if needs_count else 0
    )
    check_policy(
        tenant=caller.tenant,
        key=caller.key,
        route_name=route.name,
        body=chat.body,
        body_bytes=body_bytes,
        prompt_tokens=prompt_tokens,
    )
    cap = output_cap(
        body=chat.body,
        route_default=route.default_max_tokens,
        policy_max=policy.max_output_tokens,
        bounded=bool(budgets),
    )
    requested = requested_output_cap(chat.body)
    guard = Guard(prompt_tokens=prompt_tokens, output_cap=cap, injected_cap=None)
    if requested is None and cap is not None:
        guard.injected_cap = cap  # sent upstream, so the reserved worst case really is one
    exchange.guard = guard
    guard.admission = await admit(
        request_id=exchange.request_id,
        limits=limits,
        budgets=budgets,
        prompt_tokens=prompt_tokens,
        tpm_output_tokens=requested or route.default_max_tokens or 0,
        reserve_output_tokens=cap or 0,
        max_input_price=route.max_input_price,
        max_output_price=route.max_output_price,
    )


async def _settle(exchange: Exchange) -> None:
    guard = exchange.guard
    if guard is not None and guard.admission is not None:
        await settle(
            guard.admission,
            tokens=exchange.prompt_tokens + exchange.completion_tokens,
            cost=exchange.cost,
        )


def _cacheable(exchange: Exchange) -> bool:
    """Cache only when the route opts in and the client neither bypasses the cache nor pins
    providers (an answer from another provider would not be what was asked for)."""
    route, chat = exchange.route, exchange.chat
    assert route is not None and chat is not None
    return response_cache.enabled(route) and chat.hints.cache and not chat.hints.affects_order


async def _serve_cached(exchange: Exchange, hit: response_cache.CachedAnswer) -> HttpResponse:
    """A cache hit: no upstream call, zero cost, still counted by the rate limits."""
    chat = exchange.chat
    assert chat is not None
    usage_from(exchange, hit.usage)
    exchange.first_token_at = time.perf_counter()
    exchange.metadata["cache"] = "semantic" if hit.semantic else "exact"
    if hit.similarity is not None:
        exchange.metadata["cache_similarity"] = round(hit.similarity, 4)
    exchange.response_text = _completion_text(hit.completion)
    exchange.record(outcome="success", status=200)
    guard = exchange.guard
    if guard is not None:
        # Nothing was consumed upstream: release the reservation, correct TPM to zero.
        await settle(guard.admission, tokens=0, cost=Decimal(0))
    if chat.stream:
        chunks = response_cache.replay_chunks(hit.completion, include_usage=chat.include_usage)

        async def replay() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield _sse(chunk)
            yield b"data: [DONE]\n\n"

        response: HttpResponse = StreamingHttpResponse(replay(), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
    else:
        response = HttpResponse(hit.body(), content_type="application/json")
    for name, value in {**gateway_headers(exchange), **hit.headers()}.items():
        response[name] = value
    return response


def _store_in_cache(exchange: Exchange, result: dict) -> None:
    """Write the answer to the cache without holding the response for it."""
    route, chat, caller = exchange.route, exchange.chat, exchange.caller
    assert route is not None and chat is not None and caller is not None
    task = asyncio.ensure_future(response_cache.store(route, caller.tenant.id, chat.body, result))
    _background.add(task)
    task.add_done_callback(_background.discard)


def _upstream_body(exchange: Exchange, target: Target) -> dict:
    chat, snap = exchange.chat, exchange.snapshot
    assert chat is not None and snap is not None
    body = dict(chat.body)
    body["model"] = target.model
    body["messages"] = snap.redaction.upstream_messages(body["messages"])
    guard = exchange.guard
    if guard is not None and guard.injected_cap is not None:
        field = "max_completion_tokens" if target.kind in _COMPLETION_TOKENS_KINDS else "max_tokens"
        body[field] = guard.injected_cap
    return body


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
    if exchange.attempts and all(a.get("kind") == "circuit_open" for a in exchange.attempts):
        return errors.upstream_failed(
            "Every upstream target of this route is failing (circuit open); try again shortly.",
            status=503,
            code="circuit_open",
        )
    tried = ", ".join(
        f"{a['provider']}/{a['model']}: {a.get('kind', 'error')}" for a in exchange.attempts
    )
    if exchange.attempts and all(a.get("kind") == "timeout" for a in exchange.attempts):
        return errors.upstream_failed(
            f"Every upstream target timed out ({tried}).", status=504, code="upstream_timeout"
        )
    return errors.upstream_failed(f"Every upstream target failed ({tried}).")


async def _try_targets(exchange: Exchange, start: Callable[[Target], Awaitable[T]]) -> T:
    """Run `start` on each target in turn, with retries, until one succeeds.

    Targets come in the route strategy's order (hints applied); an open circuit is skipped
    without waiting, and after its cool-down exactly one request across all processes
    probes it.
    """
    route, chat = exchange.route, exchange.chat
    assert route is not None and chat is not None
    last: UpstreamError | None = None
    await circuit_breaker.refresh(route.targets)
    ordered = order_targets(
        route, hints=chat.hints, now=time.monotonic(), skip=circuit_breaker.is_open
    )
    for target in ordered:
        if not await circuit_breaker.allow(target):
            exchange.attempts.append(
                {
                    "provider": target.provider_name,
                    "model": target.model,
                    "ms": 0,
                    "ok": False,
                    "kind": "circuit_open",
                    "skipped": True,
                }
            )
            continue
        retries = 0
        retry_budget.on_attempt(target.key)
        while True:
            started = time.perf_counter()
            try:
                result = await start(target)
            except UpstreamError as exc:
                note_attempt(exchange, target, started, exc)
                await circuit_breaker.record(target, ok=False, kind=exc.kind)
                if exc.kind == "timeout":
                    # A hanging target's average must rise, or latency routing keeps it first.
                    latency_tracker.observe(target.key, time.perf_counter() - started)
                last = exc
                if not exc.retryable:
                    raise _all_failed(exchange, exc) from None
                delay = may_retry(target, exc, retries)
                if delay is None:
                    break
                retries += 1
                await asyncio.sleep(delay)
                if not await circuit_breaker.allow(target):
                    break  # that failure opened the circuit
                continue
            note_attempt(exchange, target, started, None)
            await circuit_breaker.record(target, ok=True)
            exchange.target = target
            exchange.first_token_at = time.perf_counter()
            latency_tracker.observe(target.key, exchange.first_token_at - started)
            return result
    raise _all_failed(exchange, last)


async def _complete(exchange: Exchange) -> HttpResponse:
    client = upstream_client()

    async def start(target: Target) -> dict:
        return await provider_for(target.kind).complete(
            target, _upstream_body(exchange, target), client
        )

    result = await _try_targets(exchange, start)
    usage = result.get("usage")
    usage_from(exchange, usage)
    exchange.response_text = _completion_text(result)
    estimate_usage_if_missing(exchange, isinstance(usage, dict))
    response = HttpResponse(orjson.dumps(result), content_type="application/json")
    for name, value in gateway_headers(exchange).items():
        response[name] = value
    if exchange.metadata.get("cache") == "miss":
        for name, value in response_cache.MISS_HEADERS.items():
            response[name] = value
        _store_in_cache(exchange, result)
    exchange.record(outcome="success", status=200)
    await _settle(exchange)
    return response


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
    client = upstream_client()

    async def start(target: Target) -> tuple[AsyncIterator[dict], dict]:
        stream = provider_for(target.kind).stream(target, _upstream_body(exchange, target), client)
        wait = target.first_byte_timeout_s or target.timeout_s
        try:
            first = await asyncio.wait_for(anext(stream), wait)
        except TimeoutError:
            await stream.aclose()  # type: ignore[attr-defined]
            raise UpstreamError(f"no first byte within {wait:g} s", kind="timeout") from None
        except UpstreamError:
            await stream.aclose()  # type: ignore[attr-defined]
            raise
        except (UpstreamStreamError, StopAsyncIteration) as exc:
            # Broken before anything was forwarded: still safe to try the next target.
            await stream.aclose()  # type: ignore[attr-defined]
            raise UpstreamError(str(exc) or "empty stream", kind="bad_response") from None
        return stream, first

    return await _try_targets(exchange, start)


@contextlib.asynccontextmanager
async def _request_deadline(exchange: Exchange) -> AsyncIterator[None]:
    """The client's own `timeout` hint bounds every attempt together (504 when it passes)."""
    assert exchange.chat is not None
    limit = exchange.chat.hints.timeout_s
    if limit is None:
        yield
        return
    try:
        async with asyncio.timeout(limit):
            yield
    except TimeoutError:
        raise errors.upstream_failed(
            f"No answer within the requested {limit:g} s.", status=504, code="upstream_timeout"
        ) from None


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
    guard = exchange.guard
    # A hard budget reserved at most `output_cap` tokens: an upstream that ignores the cap
    # is cut off there instead of overspending (about four characters a token).
    char_budget = (
        guard.output_cap * 4 + 16
        if guard is not None and guard.holds_hard_budget and guard.output_cap
        else None
    )
    streamed_chars = 0
    try:
        chunk: dict | None = first
        while chunk is not None:
            is_usage_chunk = not chunk.get("choices") and chunk.get("usage") is not None
            if chunk.get("usage"):
                usage_seen = True
                usage_from(exchange, chunk["usage"])
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str):
                    text.append(delta["content"])
                    streamed_chars += len(delta["content"])
                for call in delta.get("tool_calls") or ():
                    fn = call.get("function") or {}
                    pieces = tool_args.setdefault(call.get("index", 0), [])
                    if fn.get("name"):
                        pieces.append(f"[tool_call {fn['name']}] ")
                    if fn.get("arguments"):
                        pieces.append(fn["arguments"])
                        streamed_chars += len(fn["arguments"])
            if char_budget is not None and streamed_chars > char_budget:
                failure = GatewayError(
                    429,
                    "The stream was stopped: it would have run past a hard budget.",
                    type="insufficient_quota",
                    code="insufficient_quota",
                )
                outcome, status = "rejected", 429
                exchange.metadata["stopped_at_budget"] = True
                yield _sse(failure.body())
                return
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
        if exchange.target is not None:
            await circuit_breaker.record(exchange.target, ok=False, kind=exc.kind)
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
        # Record first: nothing below may keep the row from being written, even if the
        # client's disconnect cancels us again while we await.
        exchange.response_text = "".join(text) + "".join(
            "".join(parts) for _, parts in sorted(tool_args.items())
        )
        estimate_usage_if_missing(exchange, usage_seen)
        if outcome == "cancelled":
            exchange.metadata["cancelled_after_ms"] = exchange.elapsed_ms()
        exchange.record(outcome=outcome, status=status, error=failure)
        settling = asyncio.ensure_future(_settle(exchange))
        try:
            await stream.aclose()  # type: ignore[attr-defined]
            await asyncio.shield(settling)
        except (asyncio.CancelledError, GeneratorExit):
            pass  # `settling` runs to completion on its own


async def handle_chat_completion(request: HttpRequest) -> HttpResponse:
    exchange = Exchange(request=request)
    try:
        exchange.snapshot = await snapshots.aget()
        exchange.caller = authenticate(exchange.snapshot, request)
        exchange.chat = parse_chat_request(
            read_json_body(request),
            route_header=request.headers.get("x-route"),
            headers=request.headers,
        )
        exchange.route = _resolve_route(exchange)
        await _govern(exchange, body_bytes=len(request.body))
        if _cacheable(exchange):
            hit = await response_cache.lookup(
                exchange.route, exchange.caller.tenant.id, exchange.chat.body
            )
            if hit is not None:
                return await _serve_cached(exchange, hit)
            exchange.metadata["cache"] = "miss"
        async with _request_deadline(exchange):
            if not exchange.chat.stream:
                return await _complete(exchange)
            stream, first = await _open_stream(exchange)
    except GatewayError as exc:
        exchange.record(outcome=exc.outcome, status=exc.status, error=exc)
        await _settle(exchange)  # releases what was reserved
        response = exc.response()
        for name, value in gateway_headers(exchange).items():
            response[name] = value
        return response
    except asyncio.CancelledError:
        # The client hung up before the answer: Django cancels the view. The upstream call
        # is abandoned with it (httpx closes the connection); the row and the settlement
        # must still happen.
        exchange.metadata["cancelled_after_ms"] = exchange.elapsed_ms()
        exchange.record(outcome="cancelled", status=499)
        settling = asyncio.ensure_future(_settle(exchange))
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(settling)
        raise
    except Exception:
        logger.exception("chat completion failed")
        failure = errors.internal_error()
        exchange.record(outcome="error", status=500, error=failure)
        await _settle(exchange)
        return failure.response()
    response = StreamingHttpResponse(
        _relay(exchange, stream, first), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for name, value in gateway_headers(exchange).items():
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
