"""Rebuild daily usage roll-ups: the days of new ledger lines, or one day for every tenant."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing.rollups import rollup_date, rollup_pending


class Command(BaseCommand):
    help = (
        "Rebuild the daily usage roll-ups from the ledger: without --date, the days of the "
        "lines written since the last run (what Celery beat runs); with --date YYYY-MM-DD, "
        "that billing day of every tenant. Idempotent; days of closed months are left alone."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--date", help="a billing day, YYYY-MM-DD")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["date"] is None:
            summary = rollup_pending()
            self.stdout.write(
                f"{summary.days} tenant day(s) rebuilt, {summary.rows} row(s); "
                f"ledger cursor at line {summary.cursor}."
            )
            return
        try:
            day = date.fromisoformat(options["date"])
        except ValueError:
            raise CommandError(
                f"--date must be a day written YYYY-MM-DD, not {options['date']!r}."
            ) from None
        summary = rollup_date(day)
        self.stdout.write(f"{day}: {summary.days} tenant(s) rebuilt, {summary.rows} row(s).")
