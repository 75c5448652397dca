"""URL map of the DRF management API; the project mounts it at `api/v1/`.

Kept apart from the ninja proxy API (mounted at the root under `/v1/`), which must stay
free of DRF. Every view here carries `AuthFailureRateLimitMixin`
(gateway_project/lib/ratelimit.py) so token guessing gets 429, and `ManagementAPIMixin`
(gateway_project/lib/drf.py) for authentication and model permissions;
tests/test_brute_force.py and tests/gateway_project/test_rest_urls.py fail if one does not.
"""

from __future__ import annotations

from typing import Any

from django.urls import include, path
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.renderers import OpenApiJsonRenderer, OpenApiYamlRenderer
from drf_spectacular.views import SpectacularAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.routers import APIRootView, SimpleRouter

from billing import rest as billing_rest
from gateway_project.lib.drf import ManagementAPIMixin
from gateway_project.lib.ratelimit import AuthFailureRateLimitMixin
from routing.cache.api import CacheStatsView
from routing.rest import ConfigVersionViewSet, RouteViewSet
from tenants.rest import (
    TenantKeyDetailView,
    TenantKeyRevokeView,
    TenantKeysView,
    TenantViewSet,
)


class ManagementAPIRoot(AuthFailureRateLimitMixin, ManagementAPIMixin, APIRootView):
    """The management API: tenants and their keys, routes, configuration versions, cache
    statistics, billing
    (usage reports, downloads, statements, report files); its OpenAPI schema at schema/.

    Authenticate with `Authorization: Token <token>` (`manage.py management_token_issue
    --user <name> --days <n>`) or the admin's session. Every endpoint needs a staff account with the model permission
    it names (the Ops and Finance groups hold sensible sets); this list only needs staff.
    """

    # Links only, no data: any staff account may read it (ModelPermissions skips the
    # model check for views with this flag, as DRF's own root does).
    _ignore_model_permissions = True

    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        links = super().get(request, *args, **kwargs).data
        # Keys live under a tenant: give the template rather than a link to one tenant.
        tenants = reverse("management:tenant-list", request=request)
        links["tenant-keys"] = f"{tenants}{{slug}}/keys/"
        return Response(links)


class ManagementSchemaView(AuthFailureRateLimitMixin, ManagementAPIMixin, SpectacularAPIView):
    """The OpenAPI schema of this API (drf-spectacular): its DRF views only. The proxy API
    (ninja, /v1/) publishes its own at /docs. Any staff account may read it: it lists
    every endpoint, whatever the caller may call."""

    _ignore_model_permissions = True
    # JSON first: what a client that accepts anything gets, errors included (?format=yaml).
    renderer_classes = [OpenApiJsonRenderer, OpenApiYamlRenderer]


class ManagementTokenScheme(OpenApiAuthenticationExtension):
    """How the schema describes the management token (registered by being defined)."""

    target_class = "tenants.rest_auth.ManagementTokenAuthentication"
    name = "managementToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Token gwm_...`, from manage.py management_token_issue.",
        }


router = SimpleRouter()
router.register("tenants", TenantViewSet, basename="tenant")
router.register("routes", RouteViewSet, basename="route")
router.register("config-versions", ConfigVersionViewSet, basename="config-version")

app_name = "management"

urlpatterns = [
    path(
        "",
        ManagementAPIRoot.as_view(
            api_root_dict={
                "tenants": "tenant-list",
                "routes": "route-list",
                "config-versions": "config-version-list",
                "cache-stats": "cache-stats",
                "billing-usage": "billing-usage",
                "billing-exports": "billing-exports",
                "schema": "schema",
            }
        ),
        name="api-root",
    ),
    path("", include(router.urls)),
    path("cache/stats", CacheStatsView.as_view(), name="cache-stats"),
    path("billing/", include(billing_rest.urlpatterns)),
    path("schema/", ManagementSchemaView.as_view(), name="schema"),
    path("tenants/<slug:slug>/keys/", TenantKeysView.as_view(), name="tenant-keys"),
    path("tenants/<slug:slug>/keys/<int:pk>/", TenantKeyDetailView.as_view(), name="tenant-key"),
    path(
        "tenants/<slug:slug>/keys/<int:pk>/revoke/",
        TenantKeyRevokeView.as_view(),
        name="tenant-key-revoke",
    ),
]
