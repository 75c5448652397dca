"""URL map: the async proxy API (ninja), the management API (DRF), health and the admin."""

from __future__ import annotations

from django.contrib import admin
from django.urls import path

from gateway_project.api import api

admin.site.site_header = "LLM Gateway"
admin.site.site_title = "LLM Gateway admin"
admin.site.index_title = "Tenants, keys, routes and the audit log"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("", api.urls),
]
