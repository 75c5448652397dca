"""Management API for routes (read-only, `routing.view_route`: routes are edited in the admin).

GET /api/v1/routes/              ?tenant=<slug> for one tenant's own routes,
                                 ?tenant=global for the global ones
GET /api/v1/routes/<id>/
"""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import viewsets

from gateway_project.lib.drf import ManagementAPIMixin
from gateway_project.lib.ratelimit import AuthFailureRateLimitMixin
from routing.models import Route
from routing.selectors import route_list
from routing.serializers import RouteSerializer


class RouteViewSet(AuthFailureRateLimitMixin, ManagementAPIMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = RouteSerializer
    permission_model = Route

    def get_queryset(self) -> QuerySet[Route]:
        routes = route_list().order_by("name", "id")
        tenant = self.request.query_params.get("tenant")
        if tenant == "global":
            return routes.filter(tenant__isnull=True)
        if tenant:
            return routes.filter(tenant__slug=tenant)
        return routes
