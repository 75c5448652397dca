"""Report files built in the background, kept for download by whoever asked for them.

`report_export_start` records a ReportExport and queues billing.tasks.billing_report_build
once the transaction commits; the task calls `report_export_build`, which writes the file
under STATE_DIR/reports/ and reports its progress on the row as it goes. Without a worker
(the embedded setup: CELERY_TASK_ALWAYS_EAGER) the task runs inline, so the export is done
when `report_export_start` returns.

Two kinds: "report" (a usage report: csv, xlsx or json) and "lines" (the ledger lines
behind it: csv or xlsx), the long one.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from billing import exports
from billing.models import ReportExport
from billing.reports import (
    ReportQuery,
    ReportQueryError,
    parse_report_query,
    query_parameters,
    usage_report,
)

logger = logging.getLogger(__name__)

KINDS: dict[str, tuple[str, ...]] = {"report": ("csv", "xlsx", "json"), "lines": ("csv", "xlsx")}
_FAILED = "The file could not be built; the server log says why."

User = AbstractBaseUser | AnonymousUser


def reports_dir() -> Path:
    directory = Path(settings.STATE_DIR) / "reports"
    directory.mkdir(parents=True, exist_ok=True)
    return directory


# --- writes ------------------------------------------------------------------------------------


def report_export_start(
    *, user: User | None, parameters: Mapping[str, str], format: str
) -> ReportExport:
    """Record an export of `parameters` (those of parse_report_query, plus `kind`: "report"
    or "lines") in `format` and queue its build. Raises ReportQueryError on bad input."""
    kind = (parameters.get("kind") or "report").strip()
    if kind not in KINDS:
        raise ReportQueryError(
            f"kind is one of {', '.join(KINDS)}, not {kind[:40]!r}.", param="kind"
        )
    if format not in KINDS[kind]:
        raise ReportQueryError(
            f"A {kind} export is written as {' or '.join(KINDS[kind])}, not {format[:40]!r}.",
            param="format",
        )
    query = parse_report_query(parameters)
    export = ReportExport.objects.create(
        requested_by_id=user.pk if user is not None and user.is_authenticated else None,
        parameters={**query_parameters(query), "kind": kind},
        format=format,
    )
    from billing.tasks import billing_report_build  # the task module imports this one

    transaction.on_commit(functools.partial(billing_report_build.delay, str(export.id)))
    # Already built when the task ran inline, after an immediate commit (autocommit).
    export.refresh_from_db()
    return export


def _set(export_id: Any, **fields: Any) -> None:
    ReportExport.objects.filter(pk=export_id).update(**fields)


class _ProgressRecorder:
    """Writes the percentage on the row when it moves (at most a hundred updates)."""

    def __init__(self, export_id: Any, total: int) -> None:
        self.export_id, self.total, self.percent = export_id, max(total, 1), 0

    def __call__(self, written: int) -> None:
        percent = min(99, written * 100 // self.total)
        if percent > self.percent:
            self.percent = percent
            _set(self.export_id, progress=percent)


def _write(export: ReportExport, query: ReportQuery, path: Path) -> None:
    if export.parameters.get("kind") == "lines":
        recorder = _ProgressRecorder(export.id, exports.ledger_lines(query).count())
        if export.format == "xlsx":
            exports.ledger_lines_xlsx(query, path, progress=recorder)
            return
        with path.open("w", encoding="utf-8", newline="") as file:
            for chunk in exports.ledger_lines_csv(query, progress=recorder):
                file.write(chunk)
        return
    report = usage_report(query)
    _set(export.id, progress=50)
    if export.format == "xlsx":
        exports.report_xlsx(report, path)
    elif export.format == "json":
        path.write_text(json.dumps(exports.report_json(report), indent=2), encoding="utf-8")
    else:
        with path.open("w", encoding="utf-8", newline="") as file:
            file.writelines(exports.report_csv(report))


def report_export_build(*, export_id: str) -> ReportExport | None:
    """Build the export's file (billing.tasks.billing_report_build). Idempotent: a done
    export is left as it is, any other is built again from the start."""
    export = ReportExport.objects.filter(pk=export_id).first()
    if export is None or export.status == ReportExport.Status.DONE:
        return export
    _set(export.id, status=ReportExport.Status.RUNNING, progress=0, error="")
    file_name = f"{export.id}.{export.format}"
    final = reports_dir() / file_name
    # Written beside its final name and renamed when complete: a download never gets half.
    partial = final.with_name(f"{file_name}.part")
    try:
        _write(export, parse_report_query(export.parameters), partial)
        os.replace(partial, final)
    except Exception as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, ReportQueryError):
            message = str(error)
        else:
            logger.exception("report export %s failed", export.id)
            message = _FAILED
        _set(
            export.id, status=ReportExport.Status.FAILED, error=message, finished_at=timezone.now()
        )
    else:
        _set(
            export.id,
            status=ReportExport.Status.DONE,
            progress=100,
            file_name=file_name,
            finished_at=timezone.now(),
        )
    export.refresh_from_db()
    return export


# --- reads -------------------------------------------------------------------------------------


def report_exports_for_user(*, user: User) -> QuerySet[ReportExport]:
    """The exports `user` asked for, newest first."""
    if not user.is_authenticated:
        return ReportExport.objects.none()
    return ReportExport.objects.filter(requested_by_id=user.pk).order_by("-created_at")


def report_export_get(*, user: User, export_id: str) -> ReportExport | None:
    """An export, for the user who asked for it or a superuser; None for anyone else (who
    must not learn that it exists)."""
    try:
        key = uuid.UUID(str(export_id))
    except ValueError:
        return None
    exports_seen = (
        ReportExport.objects.all()
        if getattr(user, "is_superuser", False)
        else report_exports_for_user(user=user)
    )
    return exports_seen.filter(pk=key).first()


def report_export_file(export: ReportExport) -> Path | None:
    """The finished file of an export, None while it is not built (or was removed)."""
    if export.status != ReportExport.Status.DONE or not export.file_name:
        return None
    path = reports_dir() / Path(export.file_name).name
    return path if path.is_file() else None


def report_file_name(*, parameters: Mapping[str, str], format: str) -> str:
    """The name a file of these parameters is offered under, e.g.
    usage-2027-03-acme-by-model.csv or ledger-lines-2027-03-01_2027-03-15-all.csv."""
    period = parameters.get("month") or f"{parameters.get('start')}_{parameters.get('end')}"
    tenant = parameters.get("tenant") or "all"
    if parameters.get("kind") == "lines":
        return f"ledger-lines-{period}-{tenant}.{format}"
    return f"usage-{period}-{tenant}-by-{parameters.get('group_by') or 'model'}.{format}"
