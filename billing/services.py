"""Writes for budgets and rate limits. The admin, commands and importer call these."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ValidationError
from django.db import models, transaction
from django.utils import timezone

from billing.models import Budget, BudgetAlert, PriceVersion, RateLimit, Scope, default_thresholds
from gateway_project.lib.upsert import SyncResult, Upserted, replace_rows, update_fields

if TYPE_CHECKING:
    from providers.models import ProviderModel

# A form filled in a moment ago says "now" a little in the past.
PAST_TOLERANCE = timedelta(minutes=1)


@dataclass(frozen=True)
class BudgetSpec:
    period: str = Budget.Period.MONTHLY
    max_tokens: int | None = None
    max_cost_usd: Decimal | None = None
    hard: bool = True
    enabled: bool = True
    alert_thresholds: tuple[int, ...] = tuple(default_thresholds())

    @classmethod
    def of(cls, budget: Budget) -> BudgetSpec:
        """The spec a (possibly unsaved) budget holds, e.g. as the admin's form left it."""
        return cls(
            period=budget.period,
            max_tokens=budget.max_tokens,
            max_cost_usd=budget.max_cost_usd,
            hard=budget.hard,
            enabled=budget.enabled,
            alert_thresholds=tuple(budget.alert_thresholds or ()),
        )


@dataclass(frozen=True)
class RateLimitSpec:
    rpm: int | None = None
    tpm: int | None = None
    model_name: str = ""  # tenant scope only
    enabled: bool = True

    @classmethod
    def of(cls, limit: RateLimit) -> RateLimitSpec:
        """The spec a (possibly unsaved) rate limit holds, e.g. as the admin's form left it."""
        return cls(rpm=limit.rpm, tpm=limit.tpm, model_name=limit.model_name, enabled=limit.enabled)


# The scoped-limit field that holds each kind of owner, and the scope it gives.
_OWNER_FIELDS = {"tenant": Scope.TENANT, "api_key": Scope.KEY, "route": Scope.ROUTE}


@dataclass(frozen=True)
class Subject:
    """Who a limit applies to: nobody (global), or one tenant, key or route, by id."""

    scope: str
    tenant_id: int | None = None
    api_key_id: int | None = None
    route_id: int | None = None

    @classmethod
    def of(cls, owner: models.Model | None) -> Subject:
        """The subject of a tenant, an API key or a route (None: the global scope).

        The owner's kind is read from the limit models' own foreign keys rather than from
        isinstance checks: routes live in `routing`, above this app, which may not import it.
        """
        if owner is None:
            return cls(Scope.GLOBAL)
        for name, scope in _OWNER_FIELDS.items():
            related = Budget._meta.get_field(name).related_model
            if isinstance(related, type) and isinstance(owner, related):
                return cls(scope, **{f"{name}_id": owner.pk})
        raise TypeError(f"A limit applies to a tenant, key or route, not {owner!r}.")

    @classmethod
    def of_limit(cls, limit: Budget | RateLimit) -> Subject:
        """The subject a (possibly unsaved) budget or rate limit names, as a form left it."""
        return cls(
            limit.scope,
            tenant_id=limit.tenant_id,
            api_key_id=limit.api_key_id,
            route_id=limit.route_id,
        )

    def fields(self) -> dict[str, Any]:
        return {
            "scope": self.scope,
            "tenant_id": self.tenant_id,
            "api_key_id": self.api_key_id,
            "route_id": self.route_id,
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
    return sorted(set(values))  # type: ignore[arg-type]  # all ints: checked above


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


def budget_update(*, budget: Budget, subject: Subject, spec: BudgetSpec) -> Upserted[Budget]:
    """Bring `budget` to this subject and spec: validated and saved only if something differs
    (an unchanged save would rebuild every gateway's snapshot for nothing)."""
    return update_fields(budget, {**subject.fields(), **_budget_values(spec)})


def budget_delete(*, budget: Budget) -> None:
    budget.delete()


def rate_limit_update(
    *, rate_limit: RateLimit, subject: Subject, spec: RateLimitSpec
) -> Upserted[RateLimit]:
    """Bring `rate_limit` to this subject and spec, saved only if something differs."""
    return update_fields(rate_limit, {**subject.fields(), **_rate_limit_values(spec)})


def rate_limit_delete(*, rate_limit: RateLimit) -> None:
    rate_limit.delete()


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


def price_version_create(
    *,
    provider_model: ProviderModel,
    input_per_million: Decimal | int,
    output_per_million: Decimal | int,
    cached_input_per_million: Decimal | int | None = None,
    effective_from: datetime | None = None,
    created_by: Any = None,
) -> PriceVersion:
    """Add a price to the book, in force from `effective_from` (default: now; never
    before now: a past request keeps the price it was billed at).

    A version in force now also becomes the model's own price (providers' columns, what
    the config export shows); a future one takes effect at its time through the proxy's
    snapshot (routing/snapshot.py), with no further change.
    """
    from providers.services import provider_model_update

    now = timezone.now()
    when = now if effective_from is None else effective_from
    if timezone.is_naive(when):
        raise ValidationError({"effective_from": "Give a timezone-aware time."})
    if when < now - PAST_TOLERANCE:
        raise ValidationError(
            {"effective_from": "A price takes effect now or later: history is not rewritten."}
        )
    version = PriceVersion(
        provider_model=provider_model,
        input_per_million=Decimal(input_per_million),
        output_per_million=Decimal(output_per_million),
        cached_input_per_million=None
        if cached_input_per_million is None
        else Decimal(cached_input_per_million),
        effective_from=when,
        created_by=created_by,
    )
    version.full_clean()
    with transaction.atomic():
        version.save()
        if when <= now:
            # The receiver (billing.price_book) finds this version in force with the same
            # prices, so it adds no second one.
            provider_model_update(
                provider_model=provider_model,
                input_per_million=version.input_per_million,
                output_per_million=version.output_per_million,
            )
    return version
