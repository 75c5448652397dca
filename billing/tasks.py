"""Background jobs for budgets."""

from __future__ import annotations

from decimal import Decimal

from billing import services
from gateway_project.celery import app


@app.task
def budget_alert_record(
    *, budget_id: int, period_key: str, threshold: int, spent_tokens: int, spent_cost: str
) -> bool:
    """Record (and e-mail) a soft-budget threshold crossing. Idempotent."""
    alert = services.budget_alert_record(
        budget_id=budget_id,
        period_key=period_key,
        threshold=threshold,
        spent_tokens=spent_tokens,
        spent_cost=Decimal(spent_cost),
    )
    return alert is not None
