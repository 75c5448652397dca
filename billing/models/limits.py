"""Spending and traffic limits. Stored and edited here; enforced on the proxy path."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models


class Scope(models.TextChoices):
    GLOBAL = "global", "Global"
    TENANT = "tenant", "Tenant"
    KEY = "key", "API key"
    ROUTE = "route", "Route"


class ScopedLimit(models.Model):
    """A limit that applies to one tenant, key or route (or, for rate limits, everything)."""

    scope = models.CharField(max_length=16, choices=Scope.choices)
    tenant = models.ForeignKey(
        "tenants.Tenant", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    api_key = models.ForeignKey(
        "tenants.ApiKey", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    route = models.ForeignKey(
        "routing.Route", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    enabled = models.BooleanField(default=True)

    class Meta:
        abstract = True

    def clean(self) -> None:
        wanted = (
            {Scope.TENANT: "tenant", Scope.KEY: "api_key", Scope.ROUTE: "route"}.get(
                Scope(self.scope)
            )
            if self.scope
            else None
        )
        for field in ("tenant", "api_key", "route"):
            is_set = getattr(self, f"{field}_id") is not None
            if field == wanted and not is_set:
                raise ValidationError({field: f"A {self.scope} limit needs a {field}."})
            if field != wanted and is_set:
                raise ValidationError({field: f"Leave {field} empty for a {self.scope} limit."})

    @property
    def subject(self) -> str:
        if self.scope == Scope.TENANT:
            return f"tenant {self.tenant}"
        if self.scope == Scope.KEY:
            return f"key {self.api_key}"
        if self.scope == Scope.ROUTE:
            return f"route {self.route}"
        return "global"


def default_thresholds() -> list[int]:
    return [50, 80, 100]


class Budget(ScopedLimit):
    class Period(models.TextChoices):
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"
        TOTAL = "total", "Total"

    period = models.CharField(max_length=16, choices=Period.choices, default=Period.MONTHLY)
    max_tokens = models.PositiveBigIntegerField(null=True, blank=True)
    max_cost_usd = models.DecimalField(max_digits=14, decimal_places=6, null=True, blank=True)
    hard = models.BooleanField(default=True, help_text="Refuse when exhausted; else only alert.")
    alert_thresholds = models.JSONField(
        default=default_thresholds,
        blank=True,
        help_text="Percentages of the limit at which an alert is recorded (and e-mailed).",
    )

    class Meta:
        ordering = ["scope", "id"]

    def __str__(self) -> str:
        return f"{self.period} budget for {self.subject}"

    def clean(self) -> None:
        if self.scope == Scope.GLOBAL:
            raise ValidationError({"scope": "Budgets apply to a tenant, key or route."})
        super().clean()
        if self.max_tokens is None and self.max_cost_usd is None:
            raise ValidationError("Set a token limit, a cost limit, or both.")


class RateLimit(ScopedLimit):
    model_name = models.CharField(
        max_length=200, blank=True, help_text="Tenant scope only: limit one model/route name."
    )
    rpm = models.PositiveIntegerField("requests per minute", null=True, blank=True)
    tpm = models.PositiveBigIntegerField("tokens per minute", null=True, blank=True)

    class Meta:
        ordering = ["scope", "id"]

    def __str__(self) -> str:
        return f"rate limit for {self.subject}"

    def clean(self) -> None:
        super().clean()
        if self.model_name and self.scope != Scope.TENANT:
            # A per-model limit is a tenant's cap on one route name; the config format only
            # accepts `model` on tenant limits too, so the admin and the importer agree.
            raise ValidationError(
                {"model_name": "Only a tenant rate limit can name a model; leave it empty."}
            )
        if self.rpm is None and self.tpm is None:
            raise ValidationError("Set requests per minute, tokens per minute, or both.")


class BudgetAlert(models.Model):
    """A budget crossed one of its alert thresholds in one period (recorded once)."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="alerts")
    period_key = models.CharField(max_length=16)
    threshold = models.PositiveSmallIntegerField()
    spent_tokens = models.PositiveBigIntegerField(default=0)
    spent_cost_usd = models.DecimalField(max_digits=18, decimal_places=10, default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    emailed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["budget", "period_key", "threshold"], name="uniq_budget_alert"
            )
        ]

    def __str__(self) -> str:
        return f"{self.budget} reached {self.threshold}% ({self.period_key})"
