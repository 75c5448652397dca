"""Reads for budgets and rate limits (admin, commands; the proxy reads the snapshot)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db.models import QuerySet, Sum

from billing.models import Budget, RateLimit


def budget_list() -> QuerySet[Budget]:
    return Budget.objects.select_related("tenant", "route__tenant").order_by("id")


def rate_limit_list() -> QuerySet[RateLimit]:
    return RateLimit.objects.select_related("tenant", "route__tenant").order_by("id")


def budget_spend_in_period(
    *, scope: str, subject_id: int, start: datetime, end: datetime | None
) -> tuple[int, Decimal]:
    """Tokens and cost the ledger (the audit log) holds for one budget subject and period.

    This is the record a budget counter is rebuilt from. Rows are attributed to the
    period in which their request started.
    """
    from audit.models import AuditEvent

    field = {"tenant": "tenant_id", "key": "api_key_id", "route": "route_id"}[scope]
    rows = AuditEvent.objects.filter(**{field: subject_id}, created_at__gte=start)
    if end is not None:
        rows = rows.filter(created_at__lt=end)
    totals = rows.aggregate(tokens=Sum("total_tokens"), cost=Sum("cost_usd"))
    return int(totals["tokens"] or 0), Decimal(totals["cost"] or 0)
