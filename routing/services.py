"""Writes for routes and their targets. The admin, commands and importer call these."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from django.db import transaction

from gateway_project.lib.upsert import Change, SyncResult, Upserted, replace_rows, upsert
from providers.models import ProviderModel
from routing.models import Route, RouteTarget
from tenants.models import Tenant


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
    enabled: bool = True,
    targets: Sequence[TargetSpec] | None = None,
) -> Upserted[Route]:
    """Create or update the route `name` of `tenant` (None: a global route).

    `targets`, when given, replaces the route's targets; a route whose only change is
    its targets is reported as updated.
    """
    with transaction.atomic():
        result = upsert(
            Route,
            lookup={"name": name, "tenant": tenant},
            values={"strategy": strategy, "description": description, "enabled": enabled},
        )
        if targets is not None:
            synced = route_targets_replace(route=result.instance, targets=targets)
            if synced.changed and result.change == Change.UNCHANGED:
                result = replace(result, change=Change.UPDATED)
    return result


def route_delete(*, route: Route) -> None:
    """Delete a route with its targets and the budgets and limits scoped to it."""
    route.delete()
