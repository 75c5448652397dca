"""URL map of the DRF management API; the project mounts it at `api/v1/`.

Kept apart from the ninja proxy API (mounted at the root under `/v1/`), which must stay
free of DRF. Every view here carries `AuthFailureRateLimitMixin`
(gateway_project/lib/ratelimit.py) so password guessing over HTTP Basic gets 429;
tests/test_brute_force.py fails if one does not.
"""

from __future__ import annotations

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from routing.rest import RouteViewSet
from tenants.rest import (
    TenantKeyDetailView,
    TenantKeyRevokeView,
    TenantKeysView,
    TenantViewSet,
)

router = SimpleRouter()
router.register("tenants", TenantViewSet, basename="tenant")
router.register("routes", RouteViewSet, basename="route")

app_name = "management"

urlpatterns = [
    path("", include(router.urls)),
    path("tenants/<slug:slug>/keys/", TenantKeysView.as_view(), name="tenant-keys"),
    path("tenants/<slug:slug>/keys/<int:pk>/", TenantKeyDetailView.as_view(), name="tenant-key"),
    path(
        "tenants/<slug:slug>/keys/<int:pk>/revoke/",
        TenantKeyRevokeView.as_view(),
        name="tenant-key-revoke",
    ),
]
