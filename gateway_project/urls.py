"""URL map: the async proxy API (ninja), the management API (DRF), health and the admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import include, path, re_path, reverse_lazy

from gateway_project import views
from gateway_project.api import api
from gateway_project.dashboard.views import admin_index
from gateway_project.lib.ratelimit import ratelimited_admin_login
from routing.cache.admin import clear_cache_view
from routing.live.views import live_traffic_page

admin.site.site_header = "LLM Gateway"
admin.site.site_title = "LLM Gateway admin"
admin.site.index_title = "Tenants, keys, routes and the audit log"
# "View site" leads to the landing page, not to a 404 (which, with DEBUG on, lists every
# URL pattern).
admin.site.site_url = reverse_lazy("landing")  # type: ignore[assignment]  # a lazy str: URLs load later

handler404 = "gateway_project.views.not_found"
handler500 = "gateway_project.views.server_error"

urlpatterns = [
    # Ahead of ninja, whose own root ("api-root") answers 404 (the DEBUG page lists every
    # pattern); costs the proxy paths one failed match of an empty path.
    path("", views.landing, name="landing"),
    # Then the proxy API, the hot path: Django tries patterns in order.
    path("", api.urls),
    # Ahead of the admin's own "login/" so it takes that path: POSTs over the rates get 429.
    path("admin/login/", ratelimited_admin_login(admin.site)),
    path("admin/cache/", admin.site.admin_view(clear_cache_view), name="cache-clear"),
    # Its event stream, /admin/live/stream/, is a Channels consumer (gateway_project/asgi.py).
    path("admin/live/", admin.site.admin_view(live_traffic_page), name="live-traffic"),
    # The admin's own index path, taken first: the dashboard, then the list of apps.
    path("admin/", admin.site.admin_view(admin_index), name="admin-dashboard"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("gateway_project.rest_urls")),
    # Unknown API paths answer in the envelope even with DEBUG on (no technical 404 page).
    re_path(r"^v1/", views.not_found),
]
