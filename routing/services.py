"""Writes for routes and their targets. The admin, commands and importer call these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from gateway_project.lib.upsert import Change, SyncResult, Upserted, replace_rows, upsert
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
        target = RouteTarget(route=route, **values(item))
        target.full_clean()
        target.save()
        return target

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
    try:
        semantic_threshold = route_semantic_threshold_validate(value=semantic_threshold)
    except ValidationError as exc:
        raise ValidationError({"semantic_threshold": exc.error_list}) from exc
    with transaction.atomic():
        result = upsert(
            Route,
            lookup={"name": name, "tenant": tenant},
            values={
                "strategy": strategy,
                "description": description,
                "default_max_tokens": default_max_tokens,
                "cache_ttl_seconds": cache_ttl_seconds,
                "semantic_cache": semantic_cache,
                "semantic_threshold": semantic_threshold,
                "hedge_after_ms": hedge_after_ms,
                "enabled": enabled,
            },
        )
        if targets is not None:
            synced = route_targets_replace(route=result.instance, targets=targets)
            if synced.changed and result.change == Change.UNCHANGED:
                result = replace(result, change=Change.UPDATED)
    return result


def route_delete(*, route: Route) -> None:
    """Delete a route with its targets and the budgets and limits scoped to it."""
    route.delete()
