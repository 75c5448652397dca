"""The admin index: the dashboard's panels above Django's list of apps (still all there)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import NoReverseMatch, reverse

from gateway_project.dashboard.panels import dashboard_for


def _url(name: str) -> str | None:
    try:
        return reverse(name)
    except NoReverseMatch:  # that page is not installed
        return None


def _links(request: HttpRequest) -> list[dict[str, str]]:
    """Pages other parts of the admin own, each shown when it exists and the user holds
    the permission that opens its data."""
    candidates = (
        # The live page's address is fixed (its URL name is its owner's business).
        ("Live traffic", "link-live", reverse("admin:index") + "live/", "audit.view_auditevent"),
        (
            "Configuration versions",
            "link-config-versions",
            _url("admin:routing_configversion_changelist"),
            "routing.view_configversion",
        ),
        (
            "Audit log",
            "link-audit-log",
            _url("admin:audit_auditevent_changelist"),
            "audit.view_auditevent",
        ),
        (
            "Usage & billing",
            "link-usage",
            _url("admin:billing_usagereport_changelist"),
            "billing.view_dailyusage",
        ),
    )
    return [
        {"label": label, "id": element_id, "url": url}
        for label, element_id, url, permission in candidates
        if url is not None and request.user.has_perm(permission)
    ]


def admin_index(request: HttpRequest) -> HttpResponse:
    """Wrapped by admin.site.admin_view in urls.py: staff only, like the index it replaces."""
    context = {"dashboard": dashboard_for(request.user), "dashboard_links": _links(request)}
    return admin.site.index(request, extra_context=context)
