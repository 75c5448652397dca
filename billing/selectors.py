"""Reads for budgets and rate limits (admin, commands; the proxy reads the snapshot)."""

from __future__ import annotations

from django.db.models import QuerySet

from billing.models import Budget, RateLimit


def budget_list() -> QuerySet[Budget]:
    return Budget.objects.select_related("tenant", "route__tenant").order_by("id")


def rate_limit_list() -> QuerySet[RateLimit]:
    return RateLimit.objects.select_related("tenant", "route__tenant").order_by("id")
