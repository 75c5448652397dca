"""Report files built in the background (billing/report_exports.py, the task
billing.tasks.billing_report_build): inline without a worker, progress, the file kept
for its owner."""

from __future__ import annotations

import csv
import io
import json
from datetime import date

import openpyxl
import pytest
from django.contrib.auth import get_user_model

from billing import exports, report_exports
from billing.models import ReportExport
from billing.report_exports import (
    report_export_build,
    report_export_file,
    report_export_get,
    report_export_start,
    report_exports_for_user,
    report_file_name,
)
from billing.reports import ReportQueryError
from billing.tasks import billing_report_build
from tests.billing.reporting_support import line, usage, utc
from tests.factories import make_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_worker(settings, tmp_path):
    settings.STATE_DIR = tmp_path
    settings.CELERY_TASK_ALWAYS_EAGER = True


@pytest.fixture
def finance():
    return get_user_model().objects.create_user("fiona", is_staff=True)


@pytest.fixture
def acme():
    tenant = make_tenant("acme")
    usage(tenant, date(2027, 3, 1), cost="1.25")
    for minute in range(5):
        line(tenant, utc(2027, 3, 1, 0, minute))
    return tenant


def start(user, django_capture_on_commit_callbacks, *, format="csv", **parameters):
    with django_capture_on_commit_callbacks(execute=True):
        export = report_export_start(
            user=user, parameters={"month": "2027-03", **parameters}, format=format
        )
    export.refresh_from_db()
    return export


def test_without_a_worker_the_export_is_built_once_the_transaction_commits(
    acme, finance, django_capture_on_commit_callbacks, tmp_path
):
    export = start(finance, django_capture_on_commit_callbacks, tenant="acme", group_by="day")
    assert (export.status, export.progress, export.error) == ("done", 100, "")
    assert export.finished_at is not None
    assert export.parameters == {
        "tenant": "acme",
        "month": "2027-03",
        "group_by": "day",
        "kind": "report",
    }
    path = report_export_file(export)
    assert (
        path == tmp_path / "reports" / f"{export.id}.csv" == tmp_path / "reports" / export.file_name
    )
    rows = list(csv.reader(io.StringIO(path.read_text())))
    assert rows[1] == ["2027-03-01", "1", "100", "50", "0", "0", "150", "1.2500000000"]
    assert report_file_name(parameters=export.parameters, format="csv") == (
        "usage-2027-03-acme-by-day.csv"
    )


def test_json_and_xlsx_reports(acme, finance, django_capture_on_commit_callbacks):
    export = start(finance, django_capture_on_commit_callbacks, format="json")
    assert json.loads(report_export_file(export).read_text())["total"]["cost"] == "1.2500000000"
    export = start(finance, django_capture_on_commit_callbacks, format="xlsx")
    book = openpyxl.load_workbook(report_export_file(export), read_only=True)
    assert list(book["usage"].iter_rows(values_only=True))[-1][-1] == "1.2500000000"


def test_ledger_lines_export_records_its_progress_as_it_writes(
    acme, finance, django_capture_on_commit_callbacks, monkeypatch
):
    monkeypatch.setattr(exports, "CHUNK_ROWS", 2)
    seen: list[int] = []
    original = report_exports._set

    def record(export_id, **fields):
        if "progress" in fields:
            seen.append(fields["progress"])
        original(export_id, **fields)

    monkeypatch.setattr(report_exports, "_set", record)
    export = start(finance, django_capture_on_commit_callbacks, kind="lines", format="xlsx")
    assert export.status == "done"
    assert seen == [0, 40, 80, 100]
    sheet = openpyxl.load_workbook(report_export_file(export), read_only=True)["lines"]
    assert len(list(sheet.iter_rows(values_only=True))) == 1 + 5
    assert report_file_name(parameters=export.parameters, format="xlsx") == (
        "ledger-lines-2027-03-all.xlsx"
    )


def test_with_a_worker_the_export_waits_for_it(
    acme, finance, settings, django_capture_on_commit_callbacks, monkeypatch
):
    queued: list[str] = []
    monkeypatch.setattr(billing_report_build, "delay", queued.append)
    export = start(finance, django_capture_on_commit_callbacks)
    assert (export.status, queued) == ("pending", [str(export.id)])
    assert report_export_file(export) is None
    # The worker's run; and again (a redelivered task): nothing changes.
    assert billing_report_build(str(export.id)) == "done"
    first = ReportExport.objects.get(pk=export.id)
    assert billing_report_build(str(export.id)) == "done"
    assert ReportExport.objects.get(pk=export.id).finished_at == first.finished_at
    assert billing_report_build("00000000-0000-0000-0000-000000000000") is None


def test_a_build_that_fails_says_so_and_leaves_no_file(
    acme, finance, django_capture_on_commit_callbacks, monkeypatch, tmp_path
):
    def broken(report, path):
        path.write_text("half")
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(exports, "report_xlsx", broken)
    export = start(finance, django_capture_on_commit_callbacks, format="xlsx")
    assert export.status == "failed"
    assert export.error == "The file could not be built; the server log says why."
    assert "disk on fire" not in export.error
    assert list((tmp_path / "reports").iterdir()) == []
    # Parameters that no longer hold (the tenant was renamed) say why.
    ReportExport.objects.filter(pk=export.id).update(
        status="pending", parameters={"tenant": "gone", "month": "2027-03"}
    )
    assert report_export_build(export_id=str(export.id)).error == "There is no tenant 'gone'."


@pytest.mark.parametrize(
    ("parameters", "format", "param"),
    [
        ({"kind": "everything"}, "csv", "kind"),
        ({"kind": "lines"}, "json", "format"),
        ({}, "pdf", "format"),
        ({"month": "March"}, "csv", "month"),
    ],
)
def test_bad_requests_are_refused_before_anything_is_recorded(
    acme, finance, parameters, format, param
):
    with pytest.raises(ReportQueryError) as refused:
        report_export_start(
            user=finance, parameters={"month": "2027-03", **parameters}, format=format
        )
    assert refused.value.param == param
    assert not ReportExport.objects.exists()


def test_each_user_sees_only_their_own_exports_and_a_superuser_all(
    acme, finance, django_capture_on_commit_callbacks
):
    other = get_user_model().objects.create_user("otto", is_staff=True)
    boss = get_user_model().objects.create_user("root", is_staff=True, is_superuser=True)
    mine = start(finance, django_capture_on_commit_callbacks)
    theirs = start(other, django_capture_on_commit_callbacks)
    assert list(report_exports_for_user(user=finance)) == [mine]
    assert report_export_get(user=finance, export_id=str(mine.id)) == mine
    assert report_export_get(user=finance, export_id=str(theirs.id)) is None
    assert report_export_get(user=finance, export_id="not-a-uuid") is None
    assert report_export_get(user=boss, export_id=str(theirs.id)) == theirs
