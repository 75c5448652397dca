"""Liveness, readiness, and the circuit state of every provider target.

None of this is the proxy's hot path: these views read the database and Redis directly.
The status of /health and /ready is public; /ready's checks and backlog and the whole of
/health/providers are for operators only (gateway_project/lib/operator_access.py).
"""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from ninja import Router

from audit.selectors import audit_backlog
from gateway_project.lib import errors, redis_client
from gateway_project.lib.operator_access import Access, operator_access
from providers.circuit import OPEN, BreakerUnavailable, CircuitState, breaker, target_key
from providers.selectors import provider_models_by_name

router = Router(tags=["health"])


@router.get("/health", summary="Liveness: the process answers")
async def health(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _provider_targets() -> list[dict]:
    """Every model of every provider, as the proxy names its targets ("provider/model")."""
    rows = sorted(provider_models_by_name().values(), key=lambda pm: (pm.provider.name, pm.name))
    return [
        {
            "key": target_key(pm.provider.name, pm.name),
            "provider": pm.provider.name,
            "model": pm.name,
            "kind": pm.provider.kind,
            "enabled": pm.provider.enabled,
        }
        for pm in rows
    ]


async def _circuits(keys: list[str]) -> dict[str, CircuitState] | None:
    """The circuit states of `keys`, or None when Redis cannot be reached."""
    try:
        return {state.key: state for state in await breaker.states(keys)}
    except BreakerUnavailable:
        return None


def _operators_only(access: Access) -> HttpResponse:
    if access is Access.ANONYMOUS:
        error = errors.GatewayError(
            401,
            "Provider details need a staff session or the metrics token "
            "(Authorization: Bearer <GATEWAY_METRICS_TOKEN>).",
            code="not_authenticated",
            headers={"WWW-Authenticate": 'Bearer realm="gateway-metrics"'},
        )
    else:
        error = errors.permission_denied(
            "Provider details need a staff session or the metrics token.",
            code="permission_denied",
        )
    return error.response()


def _private(response: HttpResponse) -> HttpResponse:
    # The same URL answers anonymous callers with less: no shared cache may keep this one.
    response["Cache-Control"] = "private, no-store"
    return response


@router.get(
    "/health/providers",
    summary="Every provider target and its circuit state (staff session or metrics token)",
)
async def health_providers(request: HttpRequest) -> HttpResponse:
    access = await operator_access(request)
    if access is not Access.OPERATOR:
        return _operators_only(access)
    targets = await sync_to_async(_provider_targets)()
    circuits = await _circuits([target["key"] for target in targets])
    for target in targets:
        state = circuits.get(target["key"]) if circuits is not None else None
        target["circuit"] = state.as_dict() if state is not None else None
    return _private(JsonResponse(targets, safe=False))


@router.get(
    "/ready",
    summary="Readiness: database, Redis and at least one usable provider target "
    "(the checks for a staff session or the metrics token only)",
)
async def ready(request: HttpRequest) -> HttpResponse:
    checks = {"database": await sync_to_async(_database_ok)()}
    if settings.REDIS_URL:
        try:
            checks["redis"] = bool(await redis_client.async_client().ping())
        except Exception:
            checks["redis"] = False
    usable = 0
    if checks["database"]:
        targets = [t for t in await sync_to_async(_provider_targets)() if t["enabled"]]
        # No network probe of our own: a target (a stub one too) is usable unless its
        # circuit is open. Redis away: the breaker lets every target
        # through, so count them all (the redis check fails readiness if it is configured).
        circuits = await _circuits([target["key"] for target in targets]) or {}
        usable = sum(
            1
            for target in targets
            if target["key"] not in circuits or circuits[target["key"]].state != OPEN
        )
    checks["providers"] = usable > 0
    ok = all(checks.values())
    # Local files only (audit.selectors.audit_backlog), read off the event loop.
    backlog = await asyncio.to_thread(audit_backlog)
    body = {
        "status": "ok" if ok else "unavailable",
        "checks": checks,
        "usable_targets": usable,
        "audit_pending": backlog.pending,
        # Rows on this machine's disk waiting for the database (replayed by the writer).
        "audit_spooled": backlog.spooled,
        # Rows the database refused: `manage.py audit_replay_dead_letters` once fixed.
        "audit_dead_letters": backlog.dead_letters,
    }
    if await operator_access(request) is not Access.OPERATOR:
        # A wrong token gets the public answer too: the status is public anyway.
        return JsonResponse({"status": body["status"]}, status=200 if ok else 503)
    return _private(JsonResponse(body, status=200 if ok else 503))
