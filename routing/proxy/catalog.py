"""`GET /v1/models` and `GET /v1/models/{id}`: the routes a key may use, as OpenAI Model
objects with the endpoints each serves (routing/endpoints.py). From the snapshot only.

A route the key may not use answers 404 `model_not_found`, exactly as one that does not
exist: the detail never tells a tenant that another tenant's private route exists, nor a
key that its tenant has a route it is not allowed.
"""

from __future__ import annotations

import orjson
from django.http import HttpRequest, HttpResponse

from gateway_project.lib import errors
from gateway_project.lib.errors import GatewayError
from routing.endpoints import endpoints_served
from routing.proxy.exchange import Exchange
from routing.snapshot import RouteEntry, snapshots
from tenants.auth import authenticate
from tenants.snapshot import KeyEntry


def model_object(route: RouteEntry, caller_slug: str) -> dict:
    return {
        "id": route.name,
        "object": "model",
        "created": 0,
        "owned_by": caller_slug if route.tenant_id else "gateway",
        "endpoints": endpoints_served(route.targets),
    }


def _visible_route(exchange: Exchange, key: KeyEntry, name: str) -> RouteEntry:
    assert exchange.snapshot is not None
    route = exchange.snapshot.route_for(key.tenant_id, name)
    if route is None or not key.may_use(route.name):
        raise errors.model_not_found(name)
    return route


async def handle_list_models(request: HttpRequest) -> HttpResponse:
    return await _answer(request, None)


async def handle_retrieve_model(request: HttpRequest, model_id: str) -> HttpResponse:
    return await _answer(request, model_id)


async def _answer(request: HttpRequest, model_id: str | None) -> HttpResponse:
    endpoint = "models" if model_id is None else "models.retrieve"
    exchange = Exchange(request=request, metadata={"endpoint": endpoint})
    try:
        exchange.snapshot = await snapshots.aget()
        exchange.caller = caller = await authenticate(exchange.snapshot.tenancy, request)
        slug = caller.tenant.slug
        if model_id is None:
            routes = exchange.snapshot.routes_visible_to(caller.key)
            body: dict = {"object": "list", "data": [model_object(r, slug) for r in routes]}
        else:
            body = model_object(_visible_route(exchange, caller.key, model_id), slug)
    except GatewayError as exc:
        exchange.record(outcome=exc.outcome, status=exc.status, error=exc)
        return exc.response()
    exchange.record(outcome="success", status=200)
    return HttpResponse(orjson.dumps(body), content_type="application/json")
