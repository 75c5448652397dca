"""Management API for routes (staff only, read-only: routes are edited in the admin).

GET /api/v1/routes/              ?tenant=<slug> for one tenant's own routes,
                                 ?tenant=global for the global ones
GET /api/v1/routes/<id>/
"""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from rest_framework import viewsets

from gateway_project.lib.drf import ManagementAPIMixin
from routing.models import Route, RouteTarget
from routing.serializers import RouteSerializer


class RouteViewSet(ManagementAPIMixin, viewsets.ReadOnlyModelViewSet):
    serializer_class = RouteSerializer

    def get_queryset(self) -> QuerySet[Route]:
        targets = RouteTarget.objects.select_related("provider_model__provider").order_by(
            "position", "id"
        )
        routes = (
            Route.objects.select_related("tenant")
            .prefetch_related(Prefetch("targets", queryset=targets))
            .order_by("name", "id")
        )
        tenant = self.request.query_params.get("tenant")
        if tenant == "global":
            return routes.filter(tenant__isnull=True)
        if tenant:
            return routes.filter(tenant__slug=tenant)
        return routes
