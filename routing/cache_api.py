"""Cache statistics for operators: `GET /api/v1/cache/stats` (a Django staff session).

Mount once in gateway_project/api.py: `api.add_router("/api/v1/cache", cache_api.router)`.
Ninja has no session-staff auth of its own, so the view checks the session user itself and
answers 403 in the OpenAI error envelope otherwise.
"""

from __future__ import annotations

import orjson
from django.http import HttpRequest, HttpResponse
from ninja import Router

from gateway_project.lib import errors
from gateway_project.lib.redis_client import is_unavailable
from routing import cache

router = Router(tags=["cache"])


async def _is_staff(request: HttpRequest) -> bool:
    # `request.user` would hit the session and the database from the event loop.
    user = await request.auser()
    return bool(user.is_active and user.is_staff)


@router.get("/stats", summary="Response cache hits, misses and entries (staff only)")
async def cache_stats(request: HttpRequest, tenant_id: int | None = None) -> HttpResponse:
    """Counters for every tenant (with a per-tenant breakdown), or for `tenant_id` alone."""
    if not await _is_staff(request):
        return errors.permission_denied(
            "Cache statistics need a staff session.", code="staff_only"
        ).response()
    try:
        body = await cache.stats(tenant_id)
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        return errors.upstream_failed(
            "The cache store is unreachable.", status=503, code="cache_unavailable"
        ).response()
    return HttpResponse(orjson.dumps(body), content_type="application/json")
