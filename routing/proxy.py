"""The proxy path: from an authenticated request to the upstream answer and its audit row.

Order of work for one request (ARCHITECTURE.md walks through it):
1. `snapshots.aget()`: the in-memory configuration (no ORM once warm).
2. `authenticate()`: key to tenant, from the snapshot and the headers alone.
3. `read_json_body()` receives the body (not before: a refused caller costs none of it),
   up to the caller's limit; `parse_chat_request()` checks it and the routing hints, keeps
   unknown fields for pass-through.
4. the route for (tenant, name), and the key's allow-list.
5. `_govern()`: policies, then one atomic Redis admission for every rate limit and budget.
6. the response cache, when the route has one.
7. `upstream.try_targets()`: targets in the strategy's order, circuits, retries, fallback.
8. the answer (JSON, or SSE relayed chunk by chunk by `relay.relay()`), one audit row
   handed to the writer queue, and the settlement of what was reserved (after the answer
   has been sent: gateway_project/lib/after_response.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncIterator
from decimal import Decimal

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from billing.enforcement import (
    Guard,
    admit,
    check_policy,
    output_cap,
    requested_output_cap,
    settle,
)
from gateway_project.lib import after_response, errors
from gateway_project.lib.errors import GatewayError
from providers.base import Target
from providers.registry import provider_for
from providers.tokens import count_prompt_tokens, prompt_calibration
from routing import cache as response_cache
from routing.chat_request import parse_chat_request, read_json_body
from routing.exchange import (
    Exchange,
    estimate_usage_if_missing,
    gateway_headers,
    settle_after_response,
    settle_detached,
    usage_from,
)
from routing.relay import completion_text, relay, sse
from routing.snapshot import RouteEntry, snapshots
from routing.upstream import (
    longest_wait_s,
    open_stream,
    request_deadline,
    try_targets,
    upstream_body,
    upstream_client,
)
from tenants.auth import Caller, authenticate

logger = logging.getLogger(__name__)
_background: set[asyncio.Future] = set()  # cache writes in flight (kept from the GC)


def _body_limit(caller: Caller) -> int:
    """The most body this caller may send: the gateway's limit, or its policy's if lower."""
    limit = settings.GATEWAY_MAX_BODY_BYTES
    own = caller.key.policy.max_body_bytes
    return limit if own is None else min(limit, own)


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
    governed = settings.GATEWAY_GOVERNANCE_ENABLED
    needs_count = policy.max_prompt_tokens is not None or (
        governed and (bool(budgets) or any(limit.tpm is not None for limit in limits))
    )
    counted_with = route.targets[0].kind
    prompt_tokens = count_prompt_tokens(chat.body["messages"], counted_with) if needs_count else 0
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
    n = chat.body.get("n")
    choices = n if isinstance(n, int) and not isinstance(n, bool) and n > 1 else 1
    guard = Guard(
        prompt_tokens=prompt_tokens,
        output_cap=cap * choices if cap is not None else None,
        injected_cap=None,
        counted_with=counted_with,
        choices=choices,
    )
    if requested is None and cap is not None:
        guard.injected_cap = cap  # sent upstream, so the reserved worst case really is one
    exchange.guard = guard
    guard.admission = await admit(
        request_id=exchange.request_id,
        limits=limits,
        budgets=budgets,
        prompt_tokens=prompt_tokens,
        tpm_output_tokens=requested or route.default_max_tokens or 0,
        # Every choice of `n` may produce up to the cap, and the upstream bills the prompt
        # as its tokenizer counts it, not as ours does.
        reserve_output_tokens=(cap or 0) * choices,
        reserve_prompt_tokens=prompt_calibration.reserve(
            prompt_tokens,
            counted_with=counted_with,
            target_keys=[target.key for target in route.targets],
            margin=settings.GATEWAY_PROMPT_ESTIMATE_MARGIN,
        )
        if budgets
        else prompt_tokens,
        max_input_price=route.max_input_price,
        max_output_price=route.max_output_price,
        deadline_seconds=longest_wait_s(
            route, stream=chat.stream, timeout_hint_s=chat.hints.timeout_s
        ),
        output_is_ours=guard.injected_cap is not None,
        choices=choices,
    )
    guard.apply_admitted_output()


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
    exchange.response_text = completion_text(hit.completion)
    exchange.record(outcome="success", status=200)
    guard = exchange.guard
    if guard is not None:
        # Nothing was consumed upstream: release the reservation, correct TPM to zero.
        await after_response.defer(
            functools.partial(settle, guard.admission, tokens=0, cost=Decimal(0))
        )
    if chat.stream:
        chunks = response_cache.replay_chunks(hit.completion, include_usage=chat.include_usage)

        async def replay() -> AsyncIterator[bytes]:
            for chunk in chunks:
                yield sse(chunk)
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


async def _complete(exchange: Exchange) -> HttpResponse:
    client = upstream_client()

    async def start(target: Target) -> dict:
        return await provider_for(target.kind).complete(
            target, upstream_body(exchange, target), client
        )

    result = await try_targets(exchange, start)
    usage = result.get("usage")
    usage_from(exchange, usage)
    exchange.response_text = completion_text(result)
    estimate_usage_if_missing(exchange, isinstance(usage, dict))
    response = HttpResponse(orjson.dumps(result), content_type="application/json")
    for name, value in gateway_headers(exchange).items():
        response[name] = value
    if exchange.metadata.get("cache") == "miss":
        for name, value in response_cache.MISS_HEADERS.items():
            response[name] = value
        _store_in_cache(exchange, result)
    exchange.record(outcome="success", status=200)
    await settle_after_response(exchange)
    return response


async def handle_chat_completion(request: HttpRequest) -> HttpResponse:
    exchange = Exchange(request=request)
    try:
        exchange.snapshot = await snapshots.aget()
        exchange.caller = await authenticate(exchange.snapshot, request)
        # Only now, with the caller known, is the body received, and only up to its limit.
        body = await read_json_body(request, limit=_body_limit(exchange.caller))
        exchange.chat = parse_chat_request(
            body, route_header=request.headers.get("x-route"), headers=request.headers
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
        async with request_deadline(exchange):
            if not exchange.chat.stream:
                return await _complete(exchange)
            stream, first = await open_stream(exchange)
    except GatewayError as exc:
        exchange.record(outcome=exc.outcome, status=exc.status, error=exc)
        await settle_after_response(exchange)  # releases what was reserved
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
        settling = settle_detached(exchange)
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.shield(settling)
        raise
    except Exception:
        logger.exception("chat completion failed")
        failure = errors.internal_error()
        exchange.record(outcome="error", status=500, error=failure)
        await settle_after_response(exchange)
        return failure.response()
    response = StreamingHttpResponse(
        relay(exchange, stream, first), content_type="text/event-stream"
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
        exchange.caller = await authenticate(exchange.snapshot, request)
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
