"""Writes for providers and their models. The admin, commands and importer call these.

Every write validates the row (`full_clean`) and saves it through the model, so post_save
tells the proxy's config snapshot; an update writes only when a value differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any, TypedDict, Unpack

from django.db import transaction
from django.db.models import Field

from gateway_project.lib.upsert import Upserted, update_fields, upsert
from providers.models import Provider, ProviderModel


def _default(name: str) -> Any:
    field = Provider._meta.get_field(name)
    assert isinstance(field, Field)  # a column of Provider's, not a relation
    return field.get_default()


DEFAULT_TIMEOUT_S = Decimal("60")
DEFAULT_CONNECT_TIMEOUT_S = Decimal("5")
DEFAULT_MAX_RETRIES: int = _default("max_retries")
DEFAULT_CIRCUIT_FAILURE_THRESHOLD: int = _default("circuit_failure_threshold")
DEFAULT_CIRCUIT_COOLDOWN_S: int = _default("circuit_cooldown_s")


def _decimal(value: Decimal | int, field: str) -> Decimal:
    # Prices and timeouts are exact; a float here would already have lost digits.
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise TypeError(f"{field} must be a Decimal, not {type(value).__name__}.")
    return Decimal(value)


def _optional_decimal(value: Decimal | int | None, field: str) -> Decimal | None:
    return None if value is None else _decimal(value, field)


# Exact values: a float here would already have lost digits.
_DECIMALS = (
    "timeout_s", "connect_timeout_s", "first_byte_timeout_s", "stream_idle_timeout_s",
    "input_per_million", "output_per_million",
)  # fmt: skip


class ProviderSettings(TypedDict, total=False):
    """A provider's fields besides its name and kind; one left out keeps its value (an
    update) or takes the model's default (a create)."""

    base_url: str
    api_key_env: str
    api_version: str
    timeout_s: Decimal | int
    connect_timeout_s: Decimal | int
    first_byte_timeout_s: Decimal | int | None  # None: the total timeout applies
    stream_idle_timeout_s: Decimal | int | None
    max_retries: int
    circuit_failure_threshold: int
    circuit_cooldown_s: int
    stub_delay_ms: int
    enabled: bool


class ProviderChanges(ProviderSettings, total=False):
    name: str
    kind: str


class ProviderModelChanges(TypedDict, total=False):
    provider: Provider
    name: str
    input_per_million: Decimal | int
    output_per_million: Decimal | int
    context_window: int | None


def _checked(values: Mapping[str, Any]) -> dict[str, Any]:
    return {
        name: _optional_decimal(value, name) if name in _DECIMALS else value
        for name, value in values.items()
    }


def provider_create(*, name: str, kind: str, **settings: Unpack[ProviderSettings]) -> Provider:
    provider = Provider(name=name, kind=kind, **_checked(settings))
    provider.full_clean()
    provider.save()
    return provider


def provider_update(
    *, provider: Provider, **changes: Unpack[ProviderChanges]
) -> Upserted[Provider]:
    """Bring the fields given to these values (a rename included)."""
    return update_fields(provider, _checked(changes))


def provider_delete(*, provider: Provider) -> None:
    """Delete a provider and its models; refused (ProtectedError) while a route targets one."""
    with transaction.atomic():
        provider.delete()


def provider_model_create(
    *,
    provider: Provider,
    name: str,
    input_per_million: Decimal | int,
    output_per_million: Decimal | int,
    context_window: int | None = None,
) -> ProviderModel:
    model = ProviderModel(
        provider=provider,
        name=name,
        **_checked(
            {"input_per_million": input_per_million, "output_per_million": output_per_million}
        ),
        context_window=context_window,
    )
    model.full_clean()
    model.save()
    return model


def provider_model_update(
    *, provider_model: ProviderModel, **changes: Unpack[ProviderModelChanges]
) -> Upserted[ProviderModel]:
    return update_fields(provider_model, _checked(changes))


def provider_model_delete(*, provider_model: ProviderModel) -> None:
    """Refused (ProtectedError) while a route targets the model."""
    provider_model.delete()


def provider_upsert(
    *,
    name: str,
    kind: str,
    base_url: str = "",
    api_key_env: str = "",
    api_version: str = "",
    timeout_s: Decimal | int = DEFAULT_TIMEOUT_S,
    connect_timeout_s: Decimal | int = DEFAULT_CONNECT_TIMEOUT_S,
    first_byte_timeout_s: Decimal | int | None = None,
    stream_idle_timeout_s: Decimal | int | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    circuit_failure_threshold: int = DEFAULT_CIRCUIT_FAILURE_THRESHOLD,
    circuit_cooldown_s: int = DEFAULT_CIRCUIT_COOLDOWN_S,
    stub_delay_ms: int = 0,
    enabled: bool = True,
) -> Upserted[Provider]:
    """Create the provider `name` or bring every other field to the values given.

    The first-byte and stream-idle timeouts are None for "the total timeout".
    """
    return upsert(
        Provider,
        lookup={"name": name},
        values={
            "kind": kind,
            "base_url": base_url,
            "api_key_env": api_key_env,
            "api_version": api_version,
            "timeout_s": _decimal(timeout_s, "timeout_s"),
            "connect_timeout_s": _decimal(connect_timeout_s, "connect_timeout_s"),
            "first_byte_timeout_s": _optional_decimal(first_byte_timeout_s, "first_byte_timeout_s"),
            "stream_idle_timeout_s": _optional_decimal(
                stream_idle_timeout_s, "stream_idle_timeout_s"
            ),
            "max_retries": max_retries,
            "circuit_failure_threshold": circuit_failure_threshold,
            "circuit_cooldown_s": circuit_cooldown_s,
            "stub_delay_ms": stub_delay_ms,
            "enabled": enabled,
        },
    )


def provider_model_upsert(
    *,
    provider: Provider,
    name: str,
    input_per_million: Decimal | int,
    output_per_million: Decimal | int,
    context_window: int | None = None,
) -> Upserted[ProviderModel]:
    return upsert(
        ProviderModel,
        lookup={"provider": provider, "name": name},
        values={
            "input_per_million": _decimal(input_per_million, "input_per_million"),
            "output_per_million": _decimal(output_per_million, "output_per_million"),
            "context_window": context_window,
        },
    )
