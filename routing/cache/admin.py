"""Clearing the response cache from the admin.

Two entry points, neither registered here (routing/admin.py and the URL map do that):

- `clear_route_cache`, an action for RouteAdmin (`actions = [clear_route_cache]`): drops
  every tenant's cached answers on the selected routes.
- `clear_cache_view`, a staff page: GET shows the statistics and a confirmation form,
  POST (optionally with `tenant_id`) clears and goes back to the admin index. Mount it
  inside the admin so it gets the admin's login redirect, e.g.
  `path("admin/cache/clear/", admin.site.admin_view(clear_cache_view), name="cache-clear")`
  ahead of `path("admin/", admin.site.urls)`.

Both need the `routing.change_route` permission: clearing costs every tenant upstream
calls until the cache fills again.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.contrib import admin, messages
from django.contrib.admin.views.decorators import staff_member_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template import engines
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from routing import cache

PERMISSION = "routing.change_route"

_PAGE = """{% extends "admin/base_site.html" %}
{% block content %}
<h1>Response cache</h1>
<table>
  <tr><th>hits</th><td>{{ stats.hits }}</td></tr>
  <tr><th>semantic hits</th><td>{{ stats.semantic_hits }}</td></tr>
  <tr><th>misses</th><td>{{ stats.misses }}</td></tr>
  <tr><th>hit rate</th><td>{{ stats.hit_rate }}</td></tr>
  <tr><th>stores</th><td>{{ stats.stores }}</td></tr>
  <tr><th>cached answers</th><td>{{ stats.entries }}</td></tr>
  <tr><th>semantic entries</th><td>{{ stats.semantic_entries }}</td></tr>
</table>
<form method="post">{% csrf_token %}
  <p><label>Tenant id (empty: every tenant) <input type="number" name="tenant_id" min="1"></label></p>
  <input type="submit" class="default" value="Clear the cache">
</form>
{% endblock %}
"""


@admin.action(description="Clear the response cache of the selected routes", permissions=["change"])
def clear_route_cache(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> None:
    deleted = sum(
        async_to_sync(cache.clear)(route_id=route_id)
        for route_id in queryset.values_list("id", flat=True)
    )
    modeladmin.message_user(request, f"{deleted} cache keys deleted.", messages.SUCCESS)


@staff_member_required
@require_http_methods(["GET", "POST"])
def clear_cache_view(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    if request.method == "POST":
        raw = (request.POST.get("tenant_id") or "").strip()
        tenant_id = int(raw) if raw.isdigit() else None
        deleted = async_to_sync(cache.clear)(tenant_id)
        scope = f"tenant {tenant_id}" if tenant_id is not None else "every tenant"
        messages.success(request, f"Response cache cleared for {scope}: {deleted} keys deleted.")
        return HttpResponseRedirect(reverse("admin:index"))
    context: dict[str, Any] = {
        **admin.site.each_context(request),
        "title": "Response cache",
        "stats": async_to_sync(cache.stats)(),
    }
    template = engines["django"].from_string(_PAGE)
    return HttpResponse(template.render(context, request))
