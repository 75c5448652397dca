"""Background jobs: budget alerts, daily roll-ups of the usage ledger, report files."""

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


@app.task
def billing_rollup_pending() -> dict[str, int | None]:
    """Rebuild the daily roll-ups of the ledger lines written since the last run (beat,
    every BILLING_ROLLUP_INTERVAL_SECONDS). Idempotent, and safe to overlap: runs take
    turns on the cursor."""
    from billing.rollups import rollup_pending

    summary = rollup_pending()
    return {"days": summary.days, "rows": summary.rows, "cursor": summary.cursor}


@app.task
def billing_report_build(export_id: str) -> str | None:
    """Build a requested report file (billing.report_exports); its status when done.
    Idempotent: a finished export is left alone."""
    # Imported here: the proxy queues budget alerts from this module, and must not load
    # the report writers (XlsxWriter) for that.
    from billing import report_exports

    export = report_exports.report_export_build(export_id=export_id)
    return export.status if export is not None else None
