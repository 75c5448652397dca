"""Writes for routes and their targets. The admin, commands and importer call these.

Every write validates the row (`full_clean`) and saves it through the model, so post_save
tells the proxy's config snapshot; an update writes only when a value differs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, TypedDict, Unpack

from django.core.exceptions import ValidationError
from django.db import transaction

from gateway_project.lib.upsert import (
    Change,
    SyncResult,
    Upserted,
    replace_rows,
    update_fields,
    upsert,
)
from providers.models import ProviderModel
from routing.models import Route, RouteTarget
from tenants.models import Tenant

DEFAULT_SEMANTIC_THRESHOLD: Decimal = Route._meta.get_field("semantic_threshold").get_default()
_THRESHOLD_PLACES = 3  # the column's decimal_places


def route_semantic_threshold_validate(*, value: Decimal) -> Decimal:
    """A semantic-cache threshold: a cosine similarity above 0 and at most 1, with at
    most three decimal places. Raises ValidationError (code "invalid_threshold").

    The column alone would take up to 9.999, a threshold no prompt ever reaches. The
    admin form, the config reader and `route_upsert` all call this.
    """
    if (
        not isinstance(value, Decimal)
        or not value.is_finite()
        or not Decimal(0) < value <= Decimal(1)
        or -int(value.normalize().as_tuple().exponent) > _THRESHOLD_PLACES
    ):
        raise ValidationError(
            f"The semantic threshold is a similarity above 0 and at most 1, with at most "
            f"{_THRESHOLD_PLACES} decimal places; not {value}.",
            code="invalid_threshold",
        )
    return value.normalize()  # "0.9500" is 0.95, which the column can hold


@dataclass(frozen=True)
class TargetSpec:
    provider_model: ProviderModel
    weight: int = 1
    enabled: bool = True


class RouteSettings(TypedDict, total=False):
    """A route's fields besides its name and owner; one left out keeps its value (an
    update) or takes the model's default (a create)."""

    strategy: str
    description: str
    default_max_tokens: int | None
    cache_ttl_seconds: int
    semantic_cache: bool
    semantic_threshold: Decimal
    hedge_after_ms: int | None
    enabled: bool


class RouteChanges(RouteSettings, total=False):
    name: str
    tenant: Tenant | None


class RouteTargetChanges(TypedDict, total=False):
    position: int
    provider_model: ProviderModel
    weight: int
    enabled: bool


def _route_values(values: Mapping[str, Any]) -> dict[str, Any]:
    checked = dict(values)
    if "semantic_threshold" in checked:
        try:
            checked["semantic_threshold"] = route_semantic_threshold_validate(
                value=checked["semantic_threshold"]
            )
        except ValidationError as exc:
            raise ValidationError({"semantic_threshold": exc.error_list}) from exc
    return checked


def route_create(
    *,
    name: str,
    tenant: Tenant | None = None,
    targets: Sequence[TargetSpec] = (),
    **settings: Unpack[RouteSettings],
) -> Route:
    """Create the route `name` of `tenant` (None: a global one), with `targets` in order."""
    with transaction.atomic():
        route = Route(name=name, tenant=tenant, **_route_values(settings))
        route.full_clean()
        route.save()
        if targets:
            route_targets_replace(route=route, targets=targets)
    return route


def route_update(*, route: Route, **changes: Unpack[RouteChanges]) -> Upserted[Route]:
    """Bring the fields given to these values (a rename or a new owner included)."""
    return update_fields(route, _route_values(changes))


def route_target_create(
    *,
    route: Route,
    provider_model: ProviderModel,
    position: int = 0,
    weight: int = 1,
    enabled: bool = True,
) -> RouteTarget:
    """Add a target to a route; position 0 is the primary."""
    target = RouteTarget(
        route=route,
        provider_model=provider_model,
        position=position,
        weight=weight,
        enabled=enabled,
    )
    target.full_clean()
    target.save()
    return target


def route_target_update(
    *, target: RouteTarget, **changes: Unpack[RouteTargetChanges]
) -> Upserted[RouteTarget]:
    return update_fields(target, changes)


def route_target_delete(*, target: RouteTarget) -> None:
    target.delete()


def route_targets_replace(*, route: Route, targets: Sequence[TargetSpec]) -> SyncResult:
    """Make the route's targets exactly `targets`: position 0 is the primary."""

    def values(item: tuple[int, TargetSpec]) -> dict[str, Any]:
        position, spec = item
        return {
            "position": position,
            # The id, not the instance: comparing instances would load each old target's model.
            "provider_model_id": spec.provider_model.pk,
            "weight": spec.weight,
            "enabled": spec.enabled,
        }

    def create(item: tuple[int, TargetSpec]) -> RouteTarget:
        position, spec = item
        return route_target_create(
            route=route,
            provider_model=spec.provider_model,
            position=position,
            weight=spec.weight,
            enabled=spec.enabled,
        )

    existing = list(route.targets.order_by("position", "id"))
    return replace_rows(existing, list(enumerate(targets)), values=values, create=create)


def route_upsert(
    *,
    name: str,
    tenant: Tenant | None = None,
    strategy: str = Route.Strategy.FALLBACK,
    description: str = "",
    default_max_tokens: int | None = None,
    cache_ttl_seconds: int = 0,
    semantic_cache: bool = False,
    semantic_threshold: Decimal = DEFAULT_SEMANTIC_THRESHOLD,
    hedge_after_ms: int | None = None,
    enabled: bool = True,
    targets: Sequence[TargetSpec] | None = None,
) -> Upserted[Route]:
    """Create or update the route `name` of `tenant` (None: a global route).

    `targets`, when given, replaces the route's targets; a route whose only change is
    its targets is reported as updated.
    """
    values = _route_values(
        {
            "strategy": strategy,
            "description": description,
            "default_max_tokens": default_max_tokens,
            "cache_ttl_seconds": cache_ttl_seconds,
            "semantic_cache": semantic_cache,
            "semantic_threshold": semantic_threshold,
            "hedge_after_ms": hedge_after_ms,
            "enabled": enabled,
        }
    )
    with transaction.atomic():
        result = upsert(Route, lookup={"name": name, "tenant": tenant}, values=values)
        if targets is not None:
            synced = route_targets_replace(route=result.instance, targets=targets)
            if synced.changed and result.change == Change.UNCHANGED:
                result = replace(result, change=Change.UPDATED)
    return result


def route_delete(*, route: Route) -> None:
    """Delete a route with its targets and the budgets and limits scoped to it."""
    with transaction.atomic():
        route.delete()
