"""Data for Finance's page tests, made the way production makes it: ledger lines as the
proxy writes them (tests/billing/ledger_lines.py), months closed by
billing.closing.period_close (statements, and the closed months' roll-ups), the open
month rolled up by billing.rollups.rollup_pending. The pages then show what the real
report, export and statement functions compute from it.

acme bills in EUR (rate 0.92), in Europe/Paris, with a 10% discount:
- September: one request; closed (the first statement).
- A September request arrives after that close: October's statement bills it as an
  adjustment of 2026-09.
- October: one request of round figures; closed. Its statement: input $2.00, cached input
  $0.50, output $2.00 (subtotal $4.50), the adjustment $0.50, the discount -$0.50: $4.50,
  EUR 4.14.
- An October request arrives after that close: it is rolled into November 1st (late) and
  November's draft bills it as an adjustment of 2026-10.
- November (open): on DAYS, gpt-4o on route "chat" tagged team=red and gpt-4o-mini on
  route "fast" tagged team=blue.
globex, without terms (UTC, USD): November, gpt-4o on route "chat", no tags.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from billing.closing import period_close
from billing.models import Statement, UsageLine
from billing.rollups import rollup_pending
from billing.terms_services import exchange_rate_fix, tenant_terms_set
from tenants.models import Tenant
from tests import factories
from tests.billing.ledger_lines import line, local, priced_model

MONTH = "2026-11"  # open: its statements are drafts
CLOSED_MONTH = "2026-10"
DAYS = [date(2026, 11, day) for day in (2, 3, 5, 9)]
LATE_DAY = date(2026, 11, 1)  # where the late October request is rolled up
PARIS = "Europe/Paris"


@dataclass
class FinanceData:
    acme: Tenant
    globex: Tenant
    statement: Statement  # acme's October, with its adjustment of September
    late_october: UsageLine  # billed by acme's November (its draft, its report)
    # The ledger lines created in November, per tenant (not the late one).
    november: dict[str, list[UsageLine]] = field(default_factory=dict)

    def november_cost(self, tenant_slug: str | None = None) -> Decimal:
        """The cost of the November lines of a tenant (or all), as the ledger has it."""
        lines = [
            each
            for slug, lines in self.november.items()
            if tenant_slug in (None, slug)
            for each in lines
        ]
        return sum((each.cost_usd for each in lines), Decimal(0))

    def november_report_cost(self, tenant_slug: str | None = None) -> Decimal:
        """What November's report counts: its own lines and the late October one, which
        November bills."""
        late = self.late_october.cost_usd if tenant_slug in (None, "acme") else Decimal(0)
        return self.november_cost(tenant_slug) + late


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)


def make_finance_data() -> FinanceData:
    acme, globex = factories.make_tenant("acme"), factories.make_tenant("globex")
    tenant_terms_set(tenant=acme, markup_percent="-10", currency="EUR", time_zone=PARIS)
    for month in ("2026-09", CLOSED_MONTH):
        exchange_rate_fix(currency="EUR", month=month, rate="0.92")
    gpt = priced_model("gpt-4o", input_per_million="2.50", output_per_million="10.00")
    mini = priced_model("gpt-4o-mini", input_per_million="0.15", output_per_million="0.60")

    line(acme, local("2026-09-10 10:00", PARIS), gpt, prompt=400_000, completion=0)
    period_close(month="2026-09", tenant_slug="acme")
    line(acme, local("2026-09-20 10:00", PARIS), gpt, prompt=200_000, completion=0)
    line(
        acme, local("2026-10-15 10:00", PARIS), gpt,
        prompt=1_000_000, cached=200_000, completion=200_000, tags={"team": "red"},
    )  # fmt: skip
    [statement] = period_close(month=CLOSED_MONTH, tenant_slug="acme")
    late = line(acme, local("2026-10-30 10:00", PARIS), gpt, prompt=40_000, completion=1_000)

    november: dict[str, list[UsageLine]] = {"acme": [], "globex": []}
    for index, day in enumerate(DAYS):
        november["acme"] += [
            line(
                acme, noon(day), gpt, prompt=100_000 + 10_000 * index, cached=10_000,
                completion=50_000, reasoning_tokens=5_000, route="chat", tags={"team": "red"},
            ),
            line(
                acme, noon(day), mini, prompt=2_000_000 * (index + 1), completion=100_000,
                route="fast", key_prefix="gw_fast", tags={"team": "blue"},
            ),
        ]  # fmt: skip
        november["globex"].append(
            line(globex, noon(day), gpt, prompt=40_000, completion=20_000, key_prefix="gw_globex")
        )
    rollup_pending()
    return FinanceData(acme, globex, statement, late, november)


GROUP_MIGRATIONS = (
    ("tenants.migrations.0003_ops_and_finance_groups", "create_groups"),
    ("billing.migrations.0005_commercial_terms_permissions", "grant"),
    ("billing.migrations.0008_finance_pages_and_permissions", "grant"),
    ("routing.migrations.0005_config_version_permissions", "grant"),
    ("routing.migrations.0006_live_traffic_permission", "grant"),
)


def groups_as_migrated() -> None:
    """The Ops and Finance groups as the data migrations leave them, again: a transactional
    test flushes the database after it (its post_migrate brings permissions back, not
    groups). Each of those migrations may run again."""
    state = MigrationExecutor(connection).loader.project_state()
    for module, function in GROUP_MIGRATIONS:
        getattr(importlib.import_module(module), function)(state.apps, None)
