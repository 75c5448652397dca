"""Close a billing month for one tenant or all: numbered, immutable statements."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.closing import PeriodCloseError, close_plans, period_close


class Command(BaseCommand):
    help = (
        "Close billing month YYYY-MM (in each tenant's time zone) for one tenant or every "
        "tenant with unbilled usage up to it, earlier open months first, and print the "
        "statements made. Refused, with the reason, before the month's end plus "
        "BILLING_CLOSE_GRACE_MINUTES, or without the month's exchange rate for a tenant "
        "billed in another currency than USD. Closing a closed month again does nothing."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--month", required=True, help="YYYY-MM")
        parser.add_argument("--tenant", help="a tenant's slug (default: every tenant)")

    def handle(self, *args: Any, **options: Any) -> None:
        month, slug = options["month"], options["tenant"]
        try:
            plans = close_plans(month=month, tenant_slug=slug)
            statements = period_close(month=month, tenant_slug=slug)
        except PeriodCloseError as error:
            raise CommandError(str(error)) from None
        for statement in statements:
            self.stdout.write(
                f"{statement.number}  {statement.tenant_slug}  {statement.month}  "
                f"{statement.total} {statement.currency}"
            )
        billed = {statement.tenant_slug for statement in statements}
        for plan in plans:
            if plan.already_closed:
                self.stdout.write(f"{plan.tenant.slug}: {month} is already closed.")
            elif plan.tenant.slug not in billed:
                self.stdout.write(f"{plan.tenant.slug}: nothing to bill up to {month}.")
        if not plans:
            self.stdout.write(f"No tenant has unbilled usage up to {month}.")
