"""The proxy path: from an authenticated request to the upstream answer and its audit row.

`handle_chat_completion()` runs the stages in order (ARCHITECTURE.md walks through them):
1. `snapshots.aget()`: the in-memory configuration (no ORM once warm).
2. `authenticate()` (tenants/auth.py): key to tenant, from the snapshot and the headers.
3. `read_json_body()` receives the body (not before: a refused caller costs none of it),
   up to the caller's limit; `parse_chat_request()` checks it and the routing hints, keeps
   unknown fields for pass-through (request.py).
4. the route for (tenant, name), and the key's allow-list.
5. `admit_exchange()` (admission.py): policies, then one atomic Redis admission for every
   rate limit and budget.
6. `answer_from_cache()` (caching.py), when the route has a response cache.
7. `complete()` or `open_stream()` (upstream.py): targets in the strategy's order,
   circuits, retries, fallback.
8. the answer (JSON, or SSE relayed chunk by chunk by `relay()`), one audit row handed to
   the writer queue, and the settlement of what was reserved (after the answer has been
   sent: gateway_project/lib/after_response.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from gateway_project.lib import errors, logs
from gateway_project.lib.errors import GatewayError
from routing.proxy import tracing
from routing.proxy.admission import admit_exchange
from routing.proxy.caching import answer_from_cache, store_answer
from routing.proxy.dialect import CHAT, Dialect
from routing.proxy.exchange import (
    Exchange,
    estimate_usage_if_missing,
    gateway_headers,
    settle_after_response,
    settle_detached,
    usage_from,
)
from routing.proxy.relay import completion_text, relay
from routing.proxy.request import read_json_body
from routing.proxy.upstream import complete, open_stream, request_deadline
from routing.snapshot import RouteEntry, snapshots
from tenants.auth import authenticate
from tenants.policy import body_limit

logger = logging.getLogger(__name__)
R = TypeVar("R", bound=HttpResponseBase)


def _with_headers(response: R, headers: dict[str, str]) -> R:
    for name, value in headers.items():
        response[name] = value
    return response


def resolve_route(exchange: Exchange) -> RouteEntry:
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
    logs.note(route=route.name)  # the configured name, on every log line from here on
    if not route.targets:
        raise errors.upstream_failed(
            f"The route '{route.name}' has no enabled targets.", status=503
        )
    return route


async def _json_answer(exchange: Exchange, result: dict, dialect: Dialect) -> HttpResponse:
    usage = result.get("usage")
    usage_from(exchange, usage)
    tracing.answered(exchange, result)
    exchange.response_text = completion_text(result)
    estimate_usage_if_missing(exchange, isinstance(usage, dict))
    response = HttpResponse(dialect.render(result), content_type="application/json")
    _with_headers(response, gateway_headers(exchange))
    store_answer(exchange, result, response)
    exchange.record(outcome="success", status=200)
    await settle_after_response(exchange)
    return response


def _stream_answer(
    exchange: Exchange, stream: AsyncIterator[dict], first: dict, dialect: Dialect
) -> StreamingHttpResponse:
    frames = dialect.frames(exchange) if dialect.frames is not None else None
    response = StreamingHttpResponse(
        relay(exchange, stream, first, frames), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return _with_headers(response, gateway_headers(exchange))


async def handle_chat_completion(request: HttpRequest) -> HttpResponseBase:
    return await handle_in_dialect(request, CHAT)


async def serve_recorded(
    exchange: Exchange,
    serve: Callable[[], Awaitable[HttpResponseBase]],
    *,
    error: Callable[[GatewayError], HttpResponse] = GatewayError.response,
) -> HttpResponseBase:
    """Run one endpoint's stages: however they end, one audit row and the settlement of
    what was reserved. The only place a failure becomes an answer, for every endpoint;
    `error` renders it in the endpoint's envelope. Its span (tracing.py) starts here and
    ends with the audit row."""
    tracing.start_request(exchange)
    try:
        return await serve()
    except GatewayError as exc:
        exchange.record(outcome=exc.outcome, status=exc.status, error=exc)
        await settle_after_response(exchange)  # releases what was reserved
        return _with_headers(error(exc), gateway_headers(exchange))
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
        logger.exception("%s request failed", exchange.metadata.get("endpoint", "chat"))
        failure = errors.internal_error()
        exchange.record(outcome="error", status=500, error=failure)
        await settle_after_response(exchange)
        return error(failure)


async def handle_in_dialect(request: HttpRequest, dialect: Dialect) -> HttpResponseBase:
    """The stages, for a request in any dialect (dialect.py): parsed into the chat form,
    answered in the client's own."""
    exchange = Exchange(request=request)
    if dialect.endpoint is not None:
        exchange.metadata["endpoint"] = dialect.endpoint
    return await serve_recorded(
        exchange, lambda: _serve_in_dialect(exchange, request, dialect), error=dialect.error
    )


async def _serve_in_dialect(
    exchange: Exchange, request: HttpRequest, dialect: Dialect
) -> HttpResponseBase:
    exchange.snapshot = await snapshots.aget()
    exchange.caller = await authenticate(exchange.snapshot.tenancy, request)
    # Only now, with the caller known, is the body received, and only up to its limit.
    body = await read_json_body(request, limit=body_limit(exchange.caller.key.policy))
    exchange.chat = dialect.parse(body, request)
    exchange.route = resolve_route(exchange)
    with tracing.stage(exchange, "gateway.admission"):
        await admit_exchange(exchange, body_bytes=len(request.body))
    cached = await answer_from_cache(exchange, None if dialect is CHAT else dialect)
    if cached is not None:
        return cached
    async with request_deadline(exchange):
        if not exchange.chat.stream:
            return await _json_answer(exchange, await complete(exchange), dialect)
        stream, first = await open_stream(exchange)
    return _stream_answer(exchange, stream, first, dialect)
