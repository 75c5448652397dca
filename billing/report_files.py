"""Report files built in the background, as the admin shows them: the Usage & billing
page's list of the user's recent files (status, progress, download link) and the download
itself. The files are billing.report_exports'; who may have one is its
report_export_get's to say (the user who asked for it, or a superuser)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.http import FileResponse, Http404, HttpRequest
from django.urls import reverse
from django.utils import timezone

from billing import report_exports
from billing.models import ReportExport

RECENT_FILES = 10
REFRESH_SECONDS = 5
# The page refreshes itself while a file younger than this is still being built; an
# older one still waiting is waiting for a worker that is not running, and refreshing
# every few seconds would not help.
REFRESH_FOR = timedelta(hours=1)
LINES_PERMISSION = "billing.view_usageline"
CONTENT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}
_UNFINISHED = (ReportExport.Status.PENDING, ReportExport.Status.RUNNING)


def describe(parameters: dict[str, Any]) -> str:
    """What a file holds, in words: "Ledger lines · acme · 2026-11" or "Usage report by
    tag team · every tenant · 2026-11-01 to 2026-11-15"."""
    if parameters.get("kind") == "lines":
        what = "Ledger lines"
    else:
        grouping = parameters.get("group_by") or "model"
        if parameters.get("tag_key"):
            grouping = f"tag {parameters['tag_key']}"
        what = f"Usage report by {grouping}"
    period = parameters.get("month") or f"{parameters.get('start')} to {parameters.get('end')}"
    return f"{what} · {parameters.get('tenant') or 'every tenant'} · {period}"


def download_url(export: ReportExport) -> str | None:
    """The file's download link once it is built (and still there), else None."""
    if report_exports.report_export_file(export) is None:
        return None
    return reverse("admin:billing_reportexport_file", args=[export.pk])


@dataclass(frozen=True)
class ReportFileRow:
    export: ReportExport
    what: str
    file_name: str
    download_url: str | None
    unfinished: bool  # pending or running


@dataclass(frozen=True)
class RecentFiles:
    rows: list[ReportFileRow]
    refresh: bool  # a file young enough is still being built: reload the page soon


def recent_report_files(*, user: Any) -> RecentFiles:
    """The user's RECENT_FILES latest report files, newest first."""
    exports = list(report_exports.report_exports_for_user(user=user)[:RECENT_FILES])
    rows = [
        ReportFileRow(
            export=export,
            what=describe(export.parameters),
            file_name=report_exports.report_file_name(
                parameters=export.parameters, format=export.format
            ),
            download_url=download_url(export),
            unfinished=export.status in _UNFINISHED,
        )
        for export in exports
    ]
    young = timezone.now() - REFRESH_FOR
    refresh = any(row.unfinished and row.export.created_at >= young for row in rows)
    return RecentFiles(rows, refresh)


def report_file_response(request: HttpRequest, *, export_id: str) -> FileResponse:
    """The built file of a report export, for the user who asked for it or a superuser;
    404 for anyone else, as for a file that does not exist or is not built yet."""
    export = report_exports.report_export_get(user=request.user, export_id=export_id)
    if export is None:
        raise Http404("No such report file.")
    if export.parameters.get("kind") == "lines" and not request.user.has_perm(LINES_PERMISSION):
        raise Http404("No such report file.")
    path = report_exports.report_export_file(export)
    if path is None:
        raise Http404("This report file is not built (yet, or any more).")
    return FileResponse(
        path.open("rb"),
        as_attachment=True,
        filename=report_exports.report_file_name(
            parameters=export.parameters, format=export.format
        ),
        content_type=CONTENT_TYPES.get(export.format, "application/octet-stream"),
    )
