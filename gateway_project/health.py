"""Liveness, readiness, and the circuit state of every provider target.

None of this is the proxy's hot path: these views read the database and Redis directly.
"""

from __future__ import annotations

import asyncio

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from ninja import Router

from audit.selectors import audit_backlog
from gateway_project.lib import redis_client
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


@router.get("/health/providers", summary="Every provider target and its circuit state")
async def health_providers(request: HttpRequest) -> JsonResponse:
    targets = await sync_to_async(_provider_targets)()
    circuits = await _circuits([target["key"] for target in targets])
    for target in targets:
        state = circuits.get(target["key"]) if circuits is not None else None
        target["circuit"] = state.as_dict() if state is not None else None
    return JsonResponse(targets, safe=False)


@router.get("/ready", summary="Readiness: database, Redis and at least one usable provider target")
async def ready(request: HttpRequest) -> JsonResponse:
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
    return JsonResponse(
        {
            "status": "ok" if ok else "unavailable",
            "checks": checks,
            "usable_targets": usable,
            "audit_pending": backlog.pending,
            # Rows on this machine's disk waiting for the database (replayed by the writer).
            "audit_spooled": backlog.spooled,
            # Rows the database refused: `manage.py audit_replay_dead_letters` once fixed.
            "audit_dead_letters": backlog.dead_letters,
        },
        status=200 if ok else 503,
    )
