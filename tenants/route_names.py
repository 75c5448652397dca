"""The route names tenants and keys may be limited to, as the app that owns routes knows them.

Routes live in `routing`, above this app, which may therefore not import it. Routing hands
its lookups down instead: it registers a `RouteCatalog` when it starts
(`RoutingConfig.ready`), and the tenant and key services, forms and commands ask through
the functions below.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from tenants.models import Tenant


class VisibleRouteNames(Protocol):
    def __call__(self, *, tenant: Tenant, among: Iterable[str] | None = None) -> set[str]:
        """Names a key of `tenant` can call (the global routes and its own); with `among`,
        only those of these names."""
        ...


class KnownRouteNames(Protocol):
    def __call__(self, *, limit: int) -> list[str]:
        """The first `limit` distinct route names in name order, whoever owns them."""
        ...


@dataclass(frozen=True)
class RouteCatalog:
    visible_to: VisibleRouteNames
    known: KnownRouteNames


_catalog: RouteCatalog | None = None


def register(catalog: RouteCatalog) -> None:
    global _catalog
    _catalog = catalog


def _registered() -> RouteCatalog:
    if _catalog is None:
        raise ImproperlyConfigured(
            "No route catalog is registered: the routing app registers one when it starts."
        )
    return _catalog


def route_names_visible_to(*, tenant: Tenant, among: Iterable[str] | None = None) -> set[str]:
    return _registered().visible_to(tenant=tenant, among=among)


def route_names_known(*, limit: int) -> list[str]:
    return _registered().known(limit=limit)
