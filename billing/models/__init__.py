"""The billing app's models, one module per subject: limits and budgets (`limits`), the
price book and usage ledger (`prices`), commercial terms (`terms`), roll-ups,
statements and report files (`periods`); the Usage & billing page's proxy (`pages`)."""

from billing.models.limits import (
    Budget,
    BudgetAlert,
    RateLimit,
    Scope,
    ScopedLimit,
    default_thresholds,
)
from billing.models.pages import UsageReport
from billing.models.periods import (
    DailyUsage,
    ReportExport,
    RollupCursor,
    Statement,
    StatementLine,
)
from billing.models.prices import PriceVersion, UsageLine
from billing.models.terms import (
    ExchangeRate,
    PriceOverride,
    TenantTerms,
    validate_currency,
    validate_markup,
    validate_time_zone,
)

__all__ = [
    "Budget",
    "BudgetAlert",
    "DailyUsage",
    "ExchangeRate",
    "PriceOverride",
    "PriceVersion",
    "RateLimit",
    "ReportExport",
    "RollupCursor",
    "Scope",
    "ScopedLimit",
    "Statement",
    "StatementLine",
    "TenantTerms",
    "UsageLine",
    "UsageReport",
    "default_thresholds",
    "validate_currency",
    "validate_markup",
    "validate_time_zone",
]
