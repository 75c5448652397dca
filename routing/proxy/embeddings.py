"""`POST /v1/embeddings`: the chat path's stages, with inputs instead of messages.

Snapshot, authentication, the body, the route (only its targets that serve embeddings by
routing/endpoints.py's rule, the one `/v1/models` advertises: an embedding model on the
OpenAI family or the stub; the others are skipped, and a route with none is a 400 that
lists its targets), admission
counted in input tokens (nothing is reserved for output), the targets in order with
circuits, retries and fallback (upstream.try_targets), then one audit row (endpoint
"embeddings", the redacted input as the prompt, never the vectors) and the settlement
with the upstream's `usage.prompt_tokens`. No response cache here.
"""

from __future__ import annotations

import dataclasses
import logging

import orjson
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from billing.admission import Guard, admit
from gateway_project.lib import errors
from providers.base import Target
from providers.embeddings import dimensions_of, embedder_for, encode_vectors
from providers.tokens import prompt_calibration
from routing.endpoints import EMBEDDINGS, targets_serving
from routing.proxy import tracing
from routing.proxy.embedding_request import EmbeddingRequest, parse_embedding_request
from routing.proxy.exchange import (
    Exchange,
    gateway_headers,
    settle_after_response,
    usage_from,
)
from routing.proxy.handler import _with_headers, resolve_route, serve_recorded
from routing.proxy.request import read_json_body
from routing.proxy.upstream import (
    longest_wait_s,
    request_deadline,
    try_targets,
    upstream_body,
    upstream_client,
)
from routing.snapshot import RouteEntry, snapshots
from tenants.auth import authenticate
from tenants.policy import body_limit, check_policy

logger = logging.getLogger(__name__)
ENDPOINT = "embeddings"


def embeddable_route(route: RouteEntry) -> RouteEntry:
    """The route with only its targets that serve embeddings (routing/endpoints.py: an
    embedding model on a provider with an embeddings API), in their order; a route with
    none is a 400 that lists what its targets are."""
    targets = targets_serving(route.targets, EMBEDDINGS)
    if len(targets) == len(route.targets):
        return route
    if not targets:
        listed = ", ".join(f"{t.provider_name}/{t.model} ({t.kind})" for t in route.targets)
        raise errors.bad_request(
            f"The route '{route.name}' does not serve embeddings: none of its targets is an "
            f"embedding model on a provider with an embeddings API (its targets: {listed}).",
            param="model",
            code="embeddings_not_supported",
        )
    return dataclasses.replace(route, targets=targets)


async def admit_embedding(
    exchange: Exchange, embedding: EmbeddingRequest, *, body_bytes: int
) -> None:
    """Policies, rate limits and budgets, counted in input tokens (no output to reserve)."""
    snap, caller, chat, route = exchange.snapshot, exchange.caller, exchange.chat, exchange.route
    assert snap is not None and caller is not None and chat is not None and route is not None
    limits = snap.governance.limits_for(
        tenant_id=caller.tenant.id, key_id=caller.key.id, route_id=route.id, route_name=route.name
    )
    budgets = snap.governance.budgets_for(
        tenant_id=caller.tenant.id, key_id=caller.key.id, route_id=route.id
    )
    counted_with = route.targets[0].kind
    needs_count = caller.key.policy.max_prompt_tokens is not None or bool(limits or budgets)
    tokens = embedding.input_tokens(counted_with) if needs_count else 0
    check_policy(
        tenant=caller.tenant,
        key=caller.key,
        route_name=route.name,
        body=chat.body,
        body_bytes=body_bytes,
        prompt_tokens=tokens,
    )
    guard = Guard(prompt_tokens=tokens, output_cap=0, counted_with=counted_with)
    exchange.guard = guard
    guard.admission = await admit(
        request_id=exchange.request_id,
        limits=limits,
        budgets=budgets,
        prompt_tokens=tokens,
        tpm_output_tokens=0,
        reserve_output_tokens=0,
        reserve_prompt_tokens=prompt_calibration.reserve(
            tokens,
            counted_with=counted_with,
            target_keys=[target.key for target in route.targets],
            margin=settings.GATEWAY_PROMPT_ESTIMATE_MARGIN,
        )
        if budgets
        else tokens,
        max_input_price=route.max_input_price,
        max_output_price=route.max_output_price,
        deadline_seconds=longest_wait_s(route, stream=False, timeout_hint_s=chat.hints.timeout_s),
    )


async def embed(exchange: Exchange) -> dict:
    """The embeddings of the first target that gives them."""
    client = upstream_client()

    async def start(target: Target) -> dict:
        embedder = embedder_for(target.kind)
        assert embedder is not None  # embeddable_route kept only kinds that have one
        return await embedder.embed(target, upstream_body(exchange, target), client)

    return await try_targets(exchange, start)


async def _answer(exchange: Exchange, embedding: EmbeddingRequest, result: dict) -> HttpResponse:
    usage = result.get("usage")
    usage_from(exchange, usage)
    tracing.answered(exchange, result)
    exchange.completion_tokens = 0  # an embedding produces no tokens
    if not isinstance(usage, dict):
        # Some compatible servers report no usage: bill our count rather than zero.
        kind = exchange.target.kind if exchange.target else ""
        exchange.prompt_tokens = embedding.input_tokens(kind)
        exchange.metadata["usage_estimated"] = True
        result["usage"] = {
            "prompt_tokens": exchange.prompt_tokens,
            "total_tokens": exchange.prompt_tokens,
        }
    encode_vectors(result, embedding.encoding_format)
    count = len(result.get("data") or ())
    exchange.response_text = f"{count} embeddings x {dimensions_of(result)}"
    response = HttpResponse(orjson.dumps(result), content_type="application/json")
    _with_headers(response, gateway_headers(exchange))
    exchange.record(outcome="success", status=200)
    await settle_after_response(exchange)
    return response


async def _serve(exchange: Exchange, request: HttpRequest) -> HttpResponse:
    exchange.snapshot = await snapshots.aget()
    exchange.caller = await authenticate(exchange.snapshot.tenancy, request)
    body = await read_json_body(request, limit=body_limit(exchange.caller.key.policy))
    embedding = parse_embedding_request(
        body, route_header=request.headers.get("x-route"), headers=request.headers
    )
    exchange.chat = embedding.chat
    exchange.prompt = embedding.audit_prompt()
    exchange.route = resolve_route(exchange)
    exchange.route = embeddable_route(exchange.route)
    with tracing.stage(exchange, "gateway.admission"):
        await admit_embedding(exchange, embedding, body_bytes=len(request.body))
    async with request_deadline(exchange):
        return await _answer(exchange, embedding, await embed(exchange))


async def handle_embeddings(request: HttpRequest) -> HttpResponseBase:
    exchange = Exchange(request=request, metadata={"endpoint": ENDPOINT})
    return await serve_recorded(exchange, lambda: _serve(exchange, request))
