"""Finance's pages: the Usage & billing report, its downloads, the report files built in
the background for it, and statements as a printable page and a PDF.

Thin: the filters are a form (billing.report_forms), the figures come from
billing.reports.usage_report and billing.statements.statement_get, the files from
billing.exports, the chart's layout from billing.usage_chart. Mounted inside the admin by
billing/finance_admin.py (admin_view: a staff login), each view checks its own permission:
the report reads the roll-ups (view_dailyusage), the ledger download the ledger
(view_usageline), a statement view_statement, building a file add_reportexport."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import (
    FileResponse,
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.http.response import HttpResponseBase
from django.template.response import TemplateResponse
from django.urls import reverse

# Called through their modules (exports.report_csv, ...): one place each to look
# them up, whoever imports them.
from billing import exports, report_exports, reports, statements
from billing.models import ReportExport
from billing.report_files import REFRESH_SECONDS, recent_report_files
from billing.report_forms import ReportFileForm, UsageFilterForm, default_filters
from billing.reports import ReportQuery, ReportQueryError, ReportRow
from billing.statement_format import statement_text
from billing.statement_links import statement_links
from billing.statement_pdf import statement_pdf
from billing.statements import StatementError, StatementView
from billing.usage_chart import money_label, usage_chart
from gateway_project.lib.streaming import SyncStreamingResponse
from tenants.models import Tenant

REPORT_PERMISSION = "billing.view_dailyusage"
LINES_PERMISSION = "billing.view_usageline"
STATEMENT_PERMISSION = "billing.view_statement"
BUILD_PERMISSION = "billing.add_reportexport"

XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
_MONTH = re.compile(r"[0-9]{4}-(0[1-9]|1[0-2])\Z")


def _require(request: HttpRequest, permission: str) -> None:
    if not request.user.has_perm(permission):
        raise PermissionDenied


@dataclass(frozen=True)
class TableRow:
    """A report row as the page's table shows it; `cost` keeps every decimal for the
    cell's data-cost attribute, `cost_shown` is to the cent."""

    group: str
    requests: str
    prompt_tokens: str
    cached_tokens: str
    completion_tokens: str
    reasoning_tokens: str
    total_tokens: str
    cost: Decimal
    cost_shown: str


def table_row(row: ReportRow, *, label: str | None = None) -> TableRow:
    return TableRow(
        group=label if label is not None else (row.group or "(none)"),
        requests=f"{row.requests:,}",
        prompt_tokens=f"{row.prompt_tokens:,}",
        cached_tokens=f"{row.cached_tokens:,}",
        completion_tokens=f"{row.completion_tokens:,}",
        reasoning_tokens=f"{row.reasoning_tokens:,}",
        total_tokens=f"{row.total_tokens:,}",
        cost=row.cost,
        cost_shown=money_label(row.cost),
    )


def _page(
    request: HttpRequest, form: UsageFilterForm, admin_context: dict[str, Any]
) -> TemplateResponse:
    report = links = None
    query_string = ""
    rows: list[TableRow] = []
    total = None
    if form.is_valid():
        report = reports.usage_report(form.query)
        rows = [table_row(row) for row in report.rows]
        total = table_row(report.total, label="Total")
        query_string = urlencode(form.report_params())
        if request.user.has_perm(STATEMENT_PERMISSION):
            links = statement_links(query=form.query)
    can_build = request.user.has_perm(BUILD_PERMISSION)
    files = recent_report_files(user=request.user)
    page_url = reverse("admin:billing_usagereport_changelist")
    context = {
        **admin_context,
        "title": "Usage & billing",
        "form": form,
        "report": report,
        "rows": rows,
        "total": total,
        "chart": usage_chart(report.series) if report is not None else None,
        "statement_links": links,
        "query_string": query_string,
        "can_download_lines": request.user.has_perm(LINES_PERMISSION),
        "build_form": ReportFileForm(
            can_export_lines=request.user.has_perm(LINES_PERMISSION), auto_id="build-%s"
        )
        if can_build
        else None,
        "build_params": form.report_params() if report is not None else {},
        "report_files": files.rows,
        # Reloaded by GET, whatever request showed it (a POST with bad filters included).
        "refresh": REFRESH_SECONDS if files.refresh else None,
        "refresh_url": f"{page_url}?{query_string}" if query_string else page_url,
    }
    return TemplateResponse(request, "admin/billing/usage_report.html", context)


def usage_page(request: HttpRequest, *, admin_context: dict[str, Any]) -> TemplateResponse:
    """The report for the filters in the query string (this month by model without any)."""
    _require(request, REPORT_PERMISSION)
    return _page(request, UsageFilterForm(request.GET or default_filters()), admin_context)


def _file_stem(source: str, query: ReportQuery) -> str:
    period = query.month or "_".join(str(day) for day in (query.start, query.end) if day)
    grouping = f"-by-{query.group_by}" if source == "usage" else ""
    return f"{source}-{query.tenant_slug or 'all'}-{period}{grouping}"


def _xlsx_response(write: Callable[[Path], object], filename: str) -> FileResponse:
    """Write the workbook to a temporary file and send it: the file is unlinked once open,
    so it goes with the response whatever happens to the request."""
    handle, name = tempfile.mkstemp(suffix=".xlsx", prefix="gateway-report-")
    os.close(handle)
    try:
        write(Path(name))
        stream = open(name, "rb")  # noqa: SIM115  (FileResponse closes it)
    finally:
        os.unlink(name)
    return FileResponse(stream, as_attachment=True, filename=filename, content_type=XLSX)


def usage_download(
    request: HttpRequest, *, source: str, fmt: str, admin_context: dict[str, Any]
) -> HttpResponseBase:
    """The report (source "usage") or its ledger lines ("lines") as CSV or XLSX, for the
    filters in the query string; bad filters show the page with their errors."""
    _require(request, REPORT_PERMISSION)
    if source == "lines":
        _require(request, LINES_PERMISSION)
    elif source != "usage":
        raise Http404("No such download.")
    if fmt not in ("csv", "xlsx"):
        raise Http404("No such format.")
    form = UsageFilterForm(request.GET)
    if not form.is_valid():
        return _page(request, form, admin_context)
    stem = _file_stem(source, form.query)
    if fmt == "csv":
        chunks = (
            exports.report_csv(reports.usage_report(form.query))
            if source == "usage"
            else exports.ledger_lines_csv(form.query)
        )
        response = SyncStreamingResponse(chunks, content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="{stem}.csv"'
        return response
    if source == "usage":
        report = reports.usage_report(form.query)
        return _xlsx_response(lambda path: exports.report_xlsx(report, path), f"{stem}.xlsx")
    return _xlsx_response(lambda path: exports.ledger_lines_xlsx(form.query, path), f"{stem}.xlsx")


def report_file_build(request: HttpRequest, *, admin_context: dict[str, Any]) -> HttpResponseBase:
    """Build the report, or its ledger lines, for the filters posted (the page's) as a file
    in the background; then back to the page, which lists it with its progress. Bad
    filters show the page with their errors."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    _require(request, REPORT_PERMISSION)
    _require(request, BUILD_PERMISSION)
    form = UsageFilterForm(request.POST)
    if not form.is_valid():
        return _page(request, form, admin_context)
    page = f"{reverse('admin:billing_usagereport_changelist')}?{urlencode(form.report_params())}"
    can_export_lines = request.user.has_perm(LINES_PERMISSION)
    choice = ReportFileForm(request.POST, can_export_lines=can_export_lines)
    if not choice.is_valid():
        problems = "; ".join(
            f"{name}: {' '.join(str(error) for error in errors)}"
            for name, errors in choice.errors.items()
        )
        messages.error(request, f"No file built: {problems}")
        return HttpResponseRedirect(page)
    try:
        export = report_exports.report_export_start(
            user=request.user,
            parameters={**form.report_params(), "kind": choice.cleaned_data["kind"]},
            format=choice.cleaned_data["format"],
        )
    except ReportQueryError as error:
        messages.error(request, f"No file built: {error}")
        return HttpResponseRedirect(page)
    if export.status == ReportExport.Status.DONE:
        messages.success(request, "The file is built: download it from Report files below.")
    elif export.status == ReportExport.Status.FAILED:
        messages.error(request, f"The file could not be built: {export.error}")
    else:
        messages.info(
            request, "The file is being built: Report files below shows how far it has got."
        )
    return HttpResponseRedirect(page)


def _statement(tenant_slug: str, month: str) -> StatementView:
    if not _MONTH.match(month) or not Tenant.objects.filter(slug=tenant_slug).exists():
        raise Http404("No such tenant or month.")
    try:
        return statements.statement_get(tenant_slug=tenant_slug, month=month)
    except StatementError as error:  # a month closed with nothing to bill
        raise Http404(str(error)) from None


def statement_page(request: HttpRequest, *, tenant_slug: str, month: str) -> TemplateResponse:
    """A tenant's statement of `month`, issued or a draft, as a printable page."""
    _require(request, STATEMENT_PERMISSION)
    view = _statement(tenant_slug, month)
    context = {"statement": statement_text(view), "tenant_slug": tenant_slug, "month": month}
    return TemplateResponse(request, "billing/statement.html", context)


def statement_pdf_download(request: HttpRequest, *, tenant_slug: str, month: str) -> HttpResponse:
    """The same statement as a PDF, shown in the browser (saved under its number)."""
    _require(request, STATEMENT_PERMISSION)
    view = _statement(tenant_slug, month)
    name = f"statement-{tenant_slug}-{month}-{view.number or 'draft'}.pdf"
    response = HttpResponse(statement_pdf(view), content_type="application/pdf")
    response["Content-Disposition"] = f'inline; filename="{name}"'
    return response
