"""Reads for providers and models (admin, commands; the proxy reads the snapshot)."""

from __future__ import annotations

from django.db.models import QuerySet

from providers.models import Provider, ProviderModel


def provider_list() -> QuerySet[Provider]:
    return Provider.objects.prefetch_related("models").order_by("name")


def provider_find(*, name: str) -> Provider | None:
    return Provider.objects.filter(name=name).first()


def provider_models_by_name() -> dict[tuple[str, str], ProviderModel]:
    """Every model keyed by (provider name, model name), in one query."""
    return {
        (pm.provider.name, pm.name): pm for pm in ProviderModel.objects.select_related("provider")
    }


def provider_model_find(*, provider: Provider, name: str) -> ProviderModel | None:
    return ProviderModel.objects.filter(provider=provider, name=name).first()
