"""Liveness and readiness probes."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from ninja import Router

from audit.writer import audit_writer

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


@router.get("/ready", summary="Readiness: database and Redis reachable")
async def ready(request: HttpRequest) -> JsonResponse:
    checks = {"database": await sync_to_async(_database_ok)()}
    if settings.REDIS_URL:
        from gateway_project.lib.generation import async_redis

        try:
            checks["redis"] = bool(await async_redis().ping())
        except Exception:
            checks["redis"] = False
    ok = all(checks.values())
    return JsonResponse(
        {
            "status": "ok" if ok else "unavailable",
            "checks": checks,
            "audit_pending": audit_writer.pending(),
        },
        status=200 if ok else 503,
    )
