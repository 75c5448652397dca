"""`POST /v1/responses`: OpenAI's Responses API through the same stages as a chat completion.

Snapshot, authentication, the body (up to the caller's limit), the route, admission
(policies, rate limits, budgets), then the targets in the strategy's order with circuits,
retries and fallback before the first byte (upstream.py), one audit row (metadata
`endpoint: responses`) and the settlement. There is no response cache: a Response may be
stored upstream and continued by id, which a cached copy could not be.

Per target: an OpenAI-family target (providers/responses.py: openai, openai_compatible,
azure_openai) gets the request as it is and its answer goes back as it is, plain or as
its events; any other target (the stub, Anthropic) gets the request as a chat completion
(responses_request.py) and its answer is rendered as a Response (responses_render.py). A
request with no chat equivalent goes only to the route's OpenAI-family targets, and is a
400 naming what is not supported when the route has none.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator

import httpx
import orjson
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from gateway_project.lib import errors
from providers import responses as responses_api
from providers.base import Target, UpstreamError
from providers.registry import provider_for
from providers.responses import ResponsesEvent
from routing.proxy import tracing
from routing.proxy.admission import admit_exchange
from routing.proxy.exchange import (
    Exchange,
    estimate_usage_if_missing,
    gateway_headers,
    settle_after_response,
    usage_from,
)
from routing.proxy.handler import _with_headers, resolve_route, serve_recorded
from routing.proxy.request import read_json_body
from routing.proxy.responses_relay import failure_of, relay_events, response_text
from routing.proxy.responses_render import StreamRenderer, chat_usage, response_from_completion
from routing.proxy.responses_request import ResponsesRequest, parse_responses_request
from routing.proxy.upstream import (
    open_stream_with,
    request_deadline,
    try_targets,
    upstream_body,
    upstream_client,
)
from routing.snapshot import RouteEntry, snapshots
from tenants.auth import authenticate
from tenants.policy import body_limit

logger = logging.getLogger(__name__)


def _eligible(route: RouteEntry, parsed: ResponsesRequest) -> RouteEntry:
    """The route, with only the targets that can serve a request without a chat form."""
    if parsed.unsupported is None:
        return route
    targets = tuple(t for t in route.targets if t.kind in responses_api.KINDS)
    if not targets:
        raise errors.bad_request(
            f"The route '{route.name}' translates Responses API requests to chat "
            f"completions, and {parsed.unsupported} cannot be translated (only text, "
            "images and function tools can); use a route to an OpenAI-family upstream.",
            code="unsupported_parameter",
        )
    return dataclasses.replace(route, targets=targets)


def _raw_body(exchange: Exchange, parsed: ResponsesRequest, target: Target) -> dict:
    snap, guard = exchange.snapshot, exchange.guard
    assert snap is not None
    body = dict(parsed.raw)
    body["model"] = target.model
    body = snap.redaction.upstream_body(body)  # every string the client sent
    if guard is not None and guard.injected_cap is not None:
        body = {**body, "max_output_tokens": guard.injected_cap}
    return body


async def _complete(exchange: Exchange, parsed: ResponsesRequest) -> dict:
    client = upstream_client()

    async def start(target: Target) -> dict:
        if target.kind in responses_api.KINDS:
            return await responses_api.complete(target, _raw_body(exchange, parsed, target), client)
        adapter = provider_for(target.kind)
        completion = await adapter.complete(target, upstream_body(exchange, target), client)
        return response_from_completion(completion, parsed)

    return await try_targets(exchange, start)


async def _rendered(
    parsed: ResponsesRequest, chunks: AsyncIterator[dict]
) -> AsyncIterator[ResponsesEvent]:
    """A chat stream's chunks as Responses events. Nothing is yielded before the chat
    stream's first chunk, so a target that fails before it can still be fallen back from."""
    renderer = StreamRenderer(parsed)
    try:
        first = await anext(chunks, None)
        if first is None:
            raise UpstreamError("upstream stream ended before any chunk", kind="bad_response")
        for payload in renderer.opening(first) + renderer.take(first):
            yield ResponsesEvent.of(payload)
        async for chunk in chunks:
            for payload in renderer.take(chunk):
                yield ResponsesEvent.of(payload)
        for payload in renderer.closing():
            yield ResponsesEvent.of(payload)
    finally:
        await chunks.aclose()  # type: ignore[attr-defined]  # an async generator


def _events(
    exchange: Exchange, parsed: ResponsesRequest, client: httpx.AsyncClient, target: Target
) -> AsyncIterator[ResponsesEvent]:
    if target.kind in responses_api.KINDS:
        return responses_api.stream(target, _raw_body(exchange, parsed, target), client)
    chunks = provider_for(target.kind).stream(target, upstream_body(exchange, target), client)
    return _rendered(parsed, chunks)


async def _json_answer(exchange: Exchange, result: dict) -> HttpResponse:
    usage = chat_usage(result.get("usage"))
    usage_from(exchange, usage)
    tracing.answered(exchange, result)
    exchange.response_text = response_text(result)
    estimate_usage_if_missing(exchange, usage is not None)
    exchange.metadata["response_status"] = result.get("status")
    response = HttpResponse(orjson.dumps(result), content_type="application/json")
    _with_headers(response, gateway_headers(exchange))
    failure = failure_of(result)
    if failure is not None:
        exchange.record(outcome="upstream_error", status=502, error=failure)
    else:
        exchange.record(outcome="success", status=200)
    await settle_after_response(exchange)
    return response


def _stream_answer(
    exchange: Exchange, stream: AsyncIterator[ResponsesEvent], first: ResponsesEvent
) -> StreamingHttpResponse:
    response = StreamingHttpResponse(
        relay_events(exchange, stream, first), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return _with_headers(response, gateway_headers(exchange))


async def _answer(exchange: Exchange, request: HttpRequest) -> HttpResponseBase:
    """The stages, from the snapshot to the answer (failures raise)."""
    exchange.snapshot = await snapshots.aget()
    exchange.caller = await authenticate(exchange.snapshot.tenancy, request)
    body = await read_json_body(request, limit=body_limit(exchange.caller.key.policy))
    parsed = parse_responses_request(
        body, route_header=request.headers.get("x-route"), headers=request.headers
    )
    exchange.chat = parsed.chat
    exchange.route = _eligible(resolve_route(exchange), parsed)
    with tracing.stage(exchange, "gateway.admission"):
        await admit_exchange(exchange, body_bytes=len(request.body))
    async with request_deadline(exchange):
        if not parsed.chat.stream:
            return await _json_answer(exchange, await _complete(exchange, parsed))
        client = upstream_client()
        stream, first = await open_stream_with(
            exchange, lambda target: _events(exchange, parsed, client, target)
        )
    return _stream_answer(exchange, stream, first)


async def handle_responses(request: HttpRequest) -> HttpResponseBase:
    exchange = Exchange(request=request, metadata={"endpoint": "responses"})
    return await serve_recorded(exchange, lambda: _answer(exchange, request))
