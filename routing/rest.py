"""Management API for routes (read-only, `routing.view_route`: routes are edited in the admin)
and configuration versions (read-only, `routing.view_configversion`; rolling back is the
admin's, with its confirmation step).

GET /api/v1/routes/              ?tenant=<slug> for one tenant's own routes,
                                 ?tenant=global for the global ones
GET /api/v1/routes/<id>/
GET /api/v1/config-versions/     newest first, ?limit=&offset= (50 a page), no documents;
                                 ?routing_version=<hash> for those an audit row names
GET /api/v1/config-versions/<id>/  with its YAML document and the rows written
"""

from __future__ import annotations

from django.db.models import QuerySet
from rest_framework import serializers, viewsets
from rest_framework.pagination import LimitOffsetPagination

from gateway_project.lib.drf import ManagementAPIMixin
from gateway_project.lib.ratelimit import AuthFailureRateLimitMixin
from routing.models import ConfigVersion, Route
from routing.selectors import route_list
from routing.serializers import (
    ConfigVersionDetailSerializer,
    ConfigVersionSerializer,
    RouteSerializer,
)
from routing.versions.selectors import config_version_list


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


class _VersionPages(LimitOffsetPagination):
    default_limit = 50
    max_limit = 500


class ConfigVersionViewSet(
    AuthFailureRateLimitMixin, ManagementAPIMixin, viewsets.ReadOnlyModelViewSet
):
    permission_model = ConfigVersion
    pagination_class = _VersionPages

    def get_queryset(self) -> QuerySet[ConfigVersion]:
        if self.action == "retrieve":
            return ConfigVersion.objects.all()
        routing_version = self.request.query_params.get("routing_version", "")
        return config_version_list(routing_version=routing_version)

    def get_serializer_class(self) -> type[serializers.ModelSerializer]:
        if self.action == "retrieve":
            return ConfigVersionDetailSerializer
        return ConfigVersionSerializer
