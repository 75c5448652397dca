"""Reads for routes (admin, commands; the proxy reads the snapshot instead)."""

from __future__ import annotations

from collections.abc import Iterable

from django.db.models import Prefetch, Q, QuerySet

from routing.models import Route, RouteTarget
from tenants.models import Tenant


def route_list() -> QuerySet[Route]:
    """Every route with its tenant and its targets (in order) in three queries."""
    targets = RouteTarget.objects.select_related("provider_model__provider").order_by(
        "position", "id"
    )
    return Route.objects.select_related("tenant").prefetch_related(
        Prefetch("targets", queryset=targets)
    )


def route_find(*, name: str, tenant: Tenant | None = None) -> Route | None:
    return Route.objects.filter(name=name, tenant=tenant).first()


def route_names_visible_to(*, tenant: Tenant, among: Iterable[str] | None = None) -> set[str]:
    """Names a key of `tenant` can call: the global routes and the tenant's own.

    With `among`, only those of these names that exist (one query, however many routes).
    """
    routes = Route.objects.filter(Q(tenant__isnull=True) | Q(tenant=tenant))
    if among is not None:
        routes = routes.filter(name__in=list(among))
    return set(routes.values_list("name", flat=True))


def route_names(*, limit: int) -> list[str]:
    """The first `limit` distinct route names in name order, whoever owns them (the key form
    lists them as a hint)."""
    names = Route.objects.order_by("name").values_list("name", flat=True).distinct()
    return list(names[:limit])
