"""Cache statistics for operators: `GET /api/v1/cache/stats[?tenant_id=<id>]`.

A view of the DRF management API (gateway_project/rest_urls.py), so it authenticates,
checks permissions and answers errors like every other management endpoint: a token or
the admin session, staff with `routing.view_route` (cached answers belong to routes; the
counters span every tenant). Clearing the cache is the admin's (routing/cache/admin.py,
`routing.change_route`).
"""

from __future__ import annotations

from asgiref.sync import async_to_sync
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from gateway_project.lib.drf import ManagementAPIMixin
from gateway_project.lib.ratelimit import AuthFailureRateLimitMixin
from gateway_project.lib.redis_client import is_unavailable
from routing import cache
from routing.models import Route


class CacheUnavailable(exceptions.APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "The cache store is unreachable."
    default_code = "cache_unavailable"


def _tenant_id(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    if not raw.isdigit():
        raise exceptions.ValidationError(
            {"tenant_id": [exceptions.ErrorDetail("A tenant id is a positive integer.", "invalid")]}
        )
    return int(raw)


class CacheStatsView(AuthFailureRateLimitMixin, ManagementAPIMixin, APIView):
    """Response cache hits, misses and entries: every tenant (with a per-tenant breakdown),
    or `?tenant_id=` alone."""

    permission_model = Route

    @extend_schema(
        parameters=[OpenApiParameter("tenant_id", int, description="One tenant's counters.")],
        responses=OpenApiTypes.OBJECT,
    )
    def get(self, request: Request) -> Response:
        tenant_id = _tenant_id(request.query_params.get("tenant_id"))
        try:
            # Sync view, async Redis client: the admin's clear-cache page does the same.
            body = async_to_sync(cache.stats)(tenant_id)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            raise CacheUnavailable from exc
        return Response(body)
