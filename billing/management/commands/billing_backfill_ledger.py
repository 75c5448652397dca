"""Give every billable audit row that has no usage-ledger line its line (idempotent)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from billing.ledger import ledger_backfill


class Command(BaseCommand):
    help = (
        "Write the usage-ledger line of every billable audit row that has none: rows from "
        "before the ledger, or written by processes of the previous release during a "
        "rolling deploy. Safe to run again."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        added = ledger_backfill()
        self.stdout.write(f"{added} ledger line(s) added.")
