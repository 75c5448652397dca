"""Writes for budgets and rate limits. The admin, commands and importer call these."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from billing.models import Budget, BudgetAlert, RateLimit, Scope, default_thresholds
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
    alert_thresholds: tuple[int, ...] = tuple(default_thresholds())


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
        "alert_thresholds": list(spec.alert_thresholds),
    }


def _rate_limit_values(spec: RateLimitSpec) -> dict[str, Any]:
    return {
        "rpm": spec.rpm,
        "tpm": spec.tpm,
        "model_name": spec.model_name,
        "enabled": spec.enabled,
    }


def budget_thresholds_validate(*, thresholds: Iterable[object]) -> list[int]:
    """A budget's alert thresholds, tidied up (sorted, no repeats) and checked.

    Each must be a whole percentage from 1 to 100. Raises ValidationError (code
    "invalid_threshold") naming what is wrong. The admin form and the config importer both
    call this, so a list one accepts the other accepts too, and stores the same way.
    """
    values = list(thresholds)
    bad = [
        value
        for value in values
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100
    ]
    if bad:
        shown = ", ".join(repr(value) for value in bad)
        raise ValidationError(
            f"Thresholds are whole percentages from 1 to 100; not {shown}.",
            code="invalid_threshold",
        )
    return sorted(set(values))  # type: ignore[arg-type]


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


def budget_alert_record(
    *, budget_id: int, period_key: str, threshold: int, spent_tokens: int, spent_cost: Decimal
) -> BudgetAlert | None:
    """Record that a budget crossed a threshold in a period, once; e-mail it if configured.

    Idempotent: concurrent settlements that both see the crossing record one alert.
    """
    from django.conf import settings
    from django.core.mail import send_mail
    from django.db import IntegrityError
    from django.utils import timezone

    try:
        with transaction.atomic():
            alert = BudgetAlert.objects.create(
                budget_id=budget_id,
                period_key=period_key,
                threshold=threshold,
                spent_tokens=spent_tokens,
                spent_cost_usd=spent_cost,
            )
    except IntegrityError:
        return None  # already recorded (or the budget was deleted meanwhile)
    if settings.EMAIL_HOST and settings.GATEWAY_ALERT_EMAILS:
        budget = alert.budget
        send_mail(
            subject=f"[LLM gateway] {budget} reached {threshold}%",
            message=(
                f"{budget} reached {threshold}% of its limit in period {period_key}.\n"
                f"Spent: {spent_tokens} tokens, ${spent_cost}.\n"
                f"Limits: {budget.max_tokens or '-'} tokens, ${budget.max_cost_usd or '-'}."
            ),
            from_email=None,
            recipient_list=settings.GATEWAY_ALERT_EMAILS,
        )
        alert.emailed_at = timezone.now()
        alert.save(update_fields=["emailed_at"])
    return alert
