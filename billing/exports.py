"""Downloads of reports and of the ledger lines behind them, in CSV and XLSX.

CSV comes as a generator of text chunks (for StreamingHttpResponse, or a file), XLSX is
written to a path by XlsxWriter in constant-memory mode (each row goes to disk as it is
written). The ledger lines are read through a server-side cursor on Postgres
(`.iterator(chunk_size=...)`), so a month of a million lines never sits in memory.

Money: CSV carries decimal strings with the ledger's 10 places. XLSX cells are numbers
(Excel keeps 15 significant digits: a cost of millions of dollars loses its last decimals
there, never its cents), and every cost has a second, exact column as text.

Text a caller chose (a tag's value as a group label) could start like a spreadsheet
formula; a CSV cell that does is prefixed with an apostrophe, as spreadsheet programs
themselves do, and XLSX cells are written as strings, never formulas.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import xlsxwriter
import xlsxwriter.exceptions
from django.db.models import Q, QuerySet

from billing.models import TenantTerms, UsageLine
from billing.reports import Report, ReportQuery, ReportRow, query_days, query_parameters
from tenants.models import Tenant

TEN_PLACES = Decimal("1e-10")
TOTAL_LABEL = "(total)"
COUNT_COLUMNS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
)
LINE_COLUMNS = (
    "request_id",
    "created_at",
    "tenant",
    "key_prefix",
    "route",
    "provider",
    "model",
    "price_version_id",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "tags",
    "outcome",
)
# What a line's columns are read from; never the key itself (only its public prefix), and
# no prompt, answer or end-user id.
_FIELD_OF_COLUMN = {"tenant": "tenant_slug", "tags": "metadata"}
_LINE_FIELDS = tuple(_FIELD_OF_COLUMN.get(column, column) for column in LINE_COLUMNS)
CHUNK_ROWS = 2000
XLSX_MAX_ROWS = 1_048_576  # per sheet, the header included
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

Progress = Callable[[int], None]  # told the number of rows written so far


def money(value: Decimal) -> str:
    """A cost as the ledger keeps it: 10 decimal places, never an exponent."""
    return f"{value.quantize(TEN_PLACES):f}"


def _cell_text(value: str) -> str:
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def group_heading(query: ReportQuery) -> str:
    if query.group_by == "tag" and query.tag_key:
        return f"tag:{query.tag_key}"
    return query.group_by


# --- the report --------------------------------------------------------------------------------


def _report_cells(row: ReportRow, label: str) -> list[Any]:
    return [label, *(getattr(row, name) for name in COUNT_COLUMNS), money(row.cost)]


def _chunks(rows: Iterable[Sequence[Any]], *, header: Sequence[str]) -> Iterator[str]:
    """CSV text in chunks of CHUNK_ROWS rows."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(header)
    for count, row in enumerate(rows, start=1):
        writer.writerow(row)
        if count % CHUNK_ROWS == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def report_csv(report: Report) -> Iterator[str]:
    """The report's rows, then its total (labelled "(total)"), as CSV chunks."""
    rows = [_report_cells(row, _cell_text(row.group)) for row in report.rows]
    rows.append(_report_cells(report.total, TOTAL_LABEL))
    return _chunks(rows, header=[group_heading(report.query), *COUNT_COLUMNS, "cost_usd"])


def _row_dict(row: ReportRow) -> dict[str, Any]:
    return {**{name: getattr(row, name) for name in COUNT_COLUMNS}, "cost": money(row.cost)}


def report_json(report: Report) -> dict[str, Any]:
    """The report as JSON-ready data: its rows (group, requests, tokens by kind, cost as a
    decimal string), its total, its query and when the roll-ups were built."""
    return {
        "query": query_parameters(report.query),
        "as_of": report.as_of.astimezone(UTC).isoformat() if report.as_of else None,
        "rows": [{"group": row.group, **_row_dict(row)} for row in report.rows],
        "total": _row_dict(report.total),
    }


def _workbook(path: str | Path) -> tuple[Any, dict[str, Any]]:
    workbook = xlsxwriter.Workbook(str(path), {"constant_memory": True})
    formats = {
        "bold": workbook.add_format({"bold": True}),
        "cost": workbook.add_format({"num_format": "#,##0.00########"}),
        "cost_total": workbook.add_format({"num_format": "#,##0.00########", "bold": True}),
    }
    return workbook, formats


def _close(workbook: Any) -> None:
    """Close (write out) a workbook; a file that cannot be written raises its OSError."""
    try:
        workbook.close()
    except xlsxwriter.exceptions.FileCreateError as error:
        cause = error.args[0] if error.args else None
        raise cause if isinstance(cause, OSError) else OSError(str(error)) from None


def _write_cost(sheet: Any, row: int, col: int, cost: Decimal, fmt: Any) -> None:
    sheet.write_number(row, col, float(cost), fmt)
    sheet.write_string(row, col + 1, money(cost))


def report_xlsx(report: Report, path: str | Path) -> None:
    """The report as a workbook: sheet "usage" (rows and total), "by day" (the series) and
    "query" (what it covers, and when the roll-ups were built)."""
    workbook, formats = _workbook(path)
    usage = workbook.add_worksheet("usage")
    header = [group_heading(report.query), *COUNT_COLUMNS, "cost_usd", "cost_usd_exact"]
    usage.write_row(0, 0, header, formats["bold"])
    for index, row in enumerate([*report.rows, report.total], start=1):
        is_total = index > len(report.rows)
        usage.write_string(index, 0, TOTAL_LABEL if is_total else row.group)
        for col, name in enumerate(COUNT_COLUMNS, start=1):
            usage.write_number(index, col, getattr(row, name))
        cost_format = formats["cost_total"] if is_total else formats["cost"]
        _write_cost(usage, index, len(COUNT_COLUMNS) + 1, row.cost, cost_format)
    usage.set_column(0, 0, 32)
    by_day = workbook.add_worksheet("by day")
    by_day.write_row(0, 0, ["day", "total_tokens", "cost_usd", "cost_usd_exact"], formats["bold"])
    for index, point in enumerate(report.series, start=1):
        by_day.write_string(index, 0, point.day.isoformat())
        by_day.write_number(index, 1, point.total_tokens)
        _write_cost(by_day, index, 2, point.cost, formats["cost"])
    about = workbook.add_worksheet("query")
    facts = [*query_parameters(report.query).items()]
    facts.append(("as_of", report.as_of.astimezone(UTC).isoformat() if report.as_of else ""))
    for index, (name, value) in enumerate(facts):
        about.write_string(index, 0, name, formats["bold"])
        about.write_string(index, 1, value)
    _close(workbook)


# --- the ledger lines --------------------------------------------------------------------------


def _bounds(first: date, last: date, zone: str) -> tuple[datetime, datetime]:
    """[local midnight of `first`, local midnight after `last`) in `zone`, as UTC."""
    tz = ZoneInfo(zone)
    start = datetime.combine(first, time(), tzinfo=tz)
    end = datetime.combine(last + timedelta(days=1), time(), tzinfo=tz)
    return start.astimezone(UTC), end.astimezone(UTC)


def ledger_lines(query: ReportQuery) -> QuerySet[UsageLine]:
    """The ledger lines of the query's tenant (or all) created during its billing days, in
    each tenant's own time zone, oldest first. By when each request happened: a line that
    arrived after its month closed is here in that month, where the month's report counts
    it in the month that bills it (billing.reports)."""
    first, last = query_days(query)
    zones: dict[str, list[int]] = {}
    terms = TenantTerms.objects.exclude(time_zone="UTC")
    tenant_ids: list[int] = []
    if query.tenant_slug is not None:
        tenant_ids = list(
            Tenant.objects.filter(slug=query.tenant_slug).values_list("id", flat=True)
        )
        terms = terms.filter(tenant_id__in=tenant_ids)
    for tenant_id, zone in terms.values_list("tenant_id", "time_zone"):
        zones.setdefault(zone, []).append(tenant_id)
    # Tenants without terms, or in UTC, bill by UTC days; the others each by their zone's.
    utc_start, utc_end = _bounds(first, last, "UTC")
    elsewhere = [tenant_id for ids in zones.values() for tenant_id in ids]
    condition = Q(created_at__gte=utc_start, created_at__lt=utc_end) & ~Q(tenant_id__in=elsewhere)
    earliest, latest = utc_start, utc_end
    for zone, ids in zones.items():
        start, end = _bounds(first, last, zone)
        condition |= Q(tenant_id__in=ids, created_at__gte=start, created_at__lt=end)
        earliest, latest = min(earliest, start), max(latest, end)
    lines = UsageLine.objects.filter(created_at__gte=earliest, created_at__lt=latest)
    if query.tenant_slug is not None:
        lines = lines.filter(tenant_id__in=tenant_ids)
    return lines.filter(condition).order_by("created_at", "id")


def _tags_json(metadata: Any) -> str:
    tags = metadata.get("tags") if isinstance(metadata, dict) else None
    if not tags:
        return ""
    return json.dumps(tags, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _line_values(
    query: ReportQuery, *, progress: Progress | None = None
) -> Iterator[tuple[Any, ...]]:
    """Each line as its LINE_COLUMNS values (cost a Decimal, created_at an ISO string)."""
    fetched = ledger_lines(query).values_list(*_LINE_FIELDS).iterator(chunk_size=CHUNK_ROWS)
    for count, values in enumerate(fetched, start=1):
        created_at: datetime = values[1]
        yield (
            values[0],
            created_at.astimezone(UTC).isoformat(),
            *values[2:7],
            values[7] or "",
            *values[8:14],
            _tags_json(values[14]),
            values[15],
        )
        if progress is not None and count % CHUNK_ROWS == 0:
            progress(count)


def ledger_lines_csv(query: ReportQuery, *, progress: Progress | None = None) -> Iterator[str]:
    """The query's ledger lines as CSV chunks, read in constant memory."""
    rows = (
        [*values[:13], money(values[13]), *values[14:]]
        for values in _line_values(query, progress=progress)
    )
    return _chunks(rows, header=LINE_COLUMNS)


def ledger_lines_xlsx(
    query: ReportQuery, path: str | Path, *, progress: Progress | None = None
) -> int:
    """The query's ledger lines as a workbook, in constant memory; past a sheet's
    1,048,576 rows they go on in "lines 2", "lines 3"... Returns the number written."""
    workbook, formats = _workbook(path)
    header = [*LINE_COLUMNS, "cost_usd_exact"]
    cost_col = LINE_COLUMNS.index("cost_usd")
    sheet, row, sheets, written = None, XLSX_MAX_ROWS, 0, 0
    for values in _line_values(query, progress=progress):
        if row == XLSX_MAX_ROWS:
            sheets += 1
            sheet = workbook.add_worksheet("lines" if sheets == 1 else f"lines {sheets}")
            sheet.write_row(0, 0, header, formats["bold"])
            row = 1
        assert sheet is not None
        for col, value in enumerate(values):
            if col == cost_col:
                sheet.write_number(row, col, float(value), formats["cost"])
            elif isinstance(value, int):
                sheet.write_number(row, col, value)
            else:
                sheet.write_string(row, col, value)
        sheet.write_string(row, len(LINE_COLUMNS), money(values[cost_col]))
        row += 1
        written += 1
    if sheets == 0:
        workbook.add_worksheet("lines").write_row(0, 0, header, formats["bold"])
    _close(workbook)
    return written
