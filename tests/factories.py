"""Plain factory functions for test data. They go through the services where one exists."""

from __future__ import annotations

from decimal import Decimal

from providers.models import Provider, ProviderModel
from routing.models import Route, RouteTarget
from tenants.models import Tenant
from tenants.services import IssuedKey, api_key_issue, tenant_create


def make_tenant(slug: str = "acme", *, status: str = Tenant.Status.ACTIVE) -> Tenant:
    return tenant_create(slug=slug, name=slug.title(), status=status)


def make_key(tenant: Tenant, *, name: str = "test key", **kwargs: object) -> IssuedKey:
    return api_key_issue(tenant=tenant, name=name, **kwargs)


def make_provider(
    name: str = "local", *, kind: str = "stub", base_url: str = "", **kwargs: object
) -> Provider:
    return Provider.objects.create(name=name, kind=kind, base_url=base_url, **kwargs)


def make_model(
    provider: Provider,
    name: str = "echo",
    *,
    input_per_million: str = "1.00",
    output_per_million: str = "2.00",
    context_window: int | None = 128_000,
) -> ProviderModel:
    return ProviderModel.objects.create(
        provider=provider,
        name=name,
        input_per_million=Decimal(input_per_million),
        output_per_million=Decimal(output_per_million),
        context_window=context_window,
    )


def make_route(
    name: str, *models: ProviderModel, tenant: Tenant | None = None, strategy: str = "fallback"
) -> Route:
    route = Route.objects.create(name=name, tenant=tenant, strategy=strategy)
    for position, model in enumerate(models):
        RouteTarget.objects.create(route=route, provider_model=model, position=position)
    return route
