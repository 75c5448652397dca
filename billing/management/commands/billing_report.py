"""A month's usage report, for cron and for checks: CSV or JSON on stdout or in a file,
XLSX in a file."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from billing import exports
from billing.reports import GROUP_BY, ReportQueryError, parse_report_query, usage_report


class Command(BaseCommand):
    help = (
        "Print or write a month's usage report from the daily roll-ups: by model, route, "
        "key, tag or day, for one tenant or all. json has the rows (group, requests, tokens "
        "by kind, cost as a decimal string in USD at list prices) and the total."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--month", required=True, help="YYYY-MM, in each tenant's time zone")
        parser.add_argument("--tenant", help="a tenant's slug (default: every tenant)")
        parser.add_argument("--group-by", default="model", choices=GROUP_BY)
        parser.add_argument("--tag-key", help="with --group-by tag: group by this tag's value")
        parser.add_argument("--format", required=True, choices=("csv", "xlsx", "json"))
        parser.add_argument("--output", help="file to write (default: stdout; xlsx needs one)")

    def handle(self, *args: Any, **options: Any) -> None:
        output: str | None = options["output"]
        if options["format"] == "xlsx" and not output:
            raise CommandError("An xlsx report is written to a file: give --output FILE.")
        try:
            query = parse_report_query(
                {
                    "month": options["month"],
                    "tenant": options["tenant"] or "",
                    "group_by": options["group_by"],
                    "tag_key": options["tag_key"] or "",
                }
            )
        except ReportQueryError as error:
            raise CommandError(str(error)) from None
        report = usage_report(query)
        if options["format"] == "xlsx":
            assert output is not None
            self._write(lambda: exports.report_xlsx(report, output), output)
            return
        if options["format"] == "json":
            chunks = [json.dumps(exports.report_json(report), indent=2) + "\n"]
        else:
            chunks = list(exports.report_csv(report))
        if output is None:
            for chunk in chunks:
                self.stdout.write(chunk, ending="")
            return
        self._write(lambda: _write_text(output, chunks), output)

    def _write(self, write: Callable[[], None], output: str) -> None:
        try:
            write()
        except OSError as error:
            raise CommandError(f"Cannot write {output}: {error.strerror or error}.") from None
        self.stderr.write(f"Wrote {output}.")


def _write_text(path: str, chunks: list[str]) -> None:
    with open(path, "w", encoding="utf-8", newline="") as file:
        file.writelines(chunks)
