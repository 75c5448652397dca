"""Writes for budgets and rate limits. The admin, commands and importer call these."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import transaction

from billing.models import Budget, RateLimit, Scope
from gateway_project.lib.upsert import SyncResult, replace_rows
from routing.models import Route
from tenants.models import ApiKey, Tenant


@dataclass(frozen=True)
class BudgetSpec:
    period: str = Budget.Period.MONTHLY
    max_tokens: int | None = None
    max_cost_usd: Decimal | None = None
    hard: bool = True
    enabled: bool = True


@dataclass(frozen=True)
class RateLimitSpec:
    rpm: int | None = None
    tpm: int | None = None
    model_name: str = ""  # tenant scope only
    enabled: bool = True


@dataclass(frozen=True)
class Subject:
    """Who a limit applies to: nobody (global), or one tenant, key or route."""

    scope: str
    tenant: Tenant | None = None
    api_key: ApiKey | None = None
    route: Route | None = None

    @classmethod
    def of(cls, owner: Tenant | ApiKey | Route | None) -> Subject:
        if owner is None:
            return cls(Scope.GLOBAL)
        if isinstance(owner, Tenant):
            return cls(Scope.TENANT, tenant=owner)
        if isinstance(owner, ApiKey):
            return cls(Scope.KEY, api_key=owner)
        return cls(Scope.ROUTE, route=owner)

    def fields(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "tenant": self.tenant,
            "api_key": self.api_key,
            "route": self.route,
        }


def _budget_values(spec: BudgetSpec) -> dict[str, Any]:
    return {
        "period": spec.period,
        "max_tokens": spec.max_tokens,
        "max_cost_usd": spec.max_cost_usd,
        "hard": spec.hard,
        "enabled": spec.enabled,
    }


def _rate_limit_values(spec: RateLimitSpec) -> dict[str, Any]:
    return {
        "rpm": spec.rpm,
        "tpm": spec.tpm,
        "model_name": spec.model_name,
        "enabled": spec.enabled,
    }


def budget_create(*, subject: Subject, spec: BudgetSpec) -> Budget:
    budget = Budget(**subject.fields(), **_budget_values(spec))
    budget.full_clean()
    budget.save()
    return budget


def rate_limit_create(*, subject: Subject, spec: RateLimitSpec) -> RateLimit:
    limit = RateLimit(**subject.fields(), **_rate_limit_values(spec))
    limit.full_clean()
    limit.save()
    return limit


def budgets_replace(*, subject: Subject, budgets: list[BudgetSpec]) -> SyncResult:
    """Make the subject's budgets exactly `budgets`, in order, writing only differences."""
    with transaction.atomic():
        existing = list(Budget.objects.filter(**subject.fields()).order_by("id"))
        return replace_rows(
            existing,
            budgets,
            values=_budget_values,
            create=lambda spec: budget_create(subject=subject, spec=spec),
        )


def rate_limits_replace(*, subject: Subject, rate_limits: list[RateLimitSpec]) -> SyncResult:
    """Make the subject's rate limits exactly `rate_limits`, in order."""
    with transaction.atomic():
        existing = list(RateLimit.objects.filter(**subject.fields()).order_by("id"))
        return replace_rows(
            existing,
            rate_limits,
            values=_rate_limit_values,
            create=lambda spec: rate_limit_create(subject=subject, spec=spec),
        )
