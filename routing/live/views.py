"""The live traffic page (/admin/live/): a table the script fills from the event stream.

Mounted in gateway_project/urls.py inside the admin (admin_view: a staff login), and
checks the same permission as the stream (routing/live/consumers.py). The filters are
rendered from the query string, so a filtered page can be bookmarked; the stream applies
them on the server.
"""

from __future__ import annotations

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from routing.live.consumers import PERMISSION
from routing.live.events import FilterError, LiveFilter
from tenants.selectors import tenant_list

STREAM_PATH = "/admin/live/stream/"
STATUS_CHOICES = [
    ("", "Any status"),
    ("ok", "Succeeded (2xx)"),
    ("error", "Failed (400 and above)"),
    ("4xx", "Refused (4xx)"),
    ("5xx", "Upstream or gateway error (5xx)"),
    ("429", "Rate limited (429)"),
]


def live_traffic_page(request: HttpRequest) -> HttpResponse:
    if not request.user.has_perm(PERMISSION):
        raise PermissionDenied
    try:
        filters = LiveFilter.from_query(request.META.get("QUERY_STRING", "").encode())
        filter_error = ""
    except FilterError as exc:
        filters, filter_error = LiveFilter(), str(exc)
    context = {
        **admin.site.each_context(request),
        "title": "Live traffic",
        "filters": filters,
        "filter_error": filter_error,
        "status_choices": STATUS_CHOICES,
        "tenant_slugs": list(tenant_list().values_list("slug", flat=True)[:1000]),
        "stream_url": STREAM_PATH,
    }
    return TemplateResponse(request, "admin/routing/live_traffic.html", context)
