"""Report files built in the background from the Usage & billing page: a POST (with its
CSRF token) for the page's filters calls billing.report_exports.report_export_start; the
page lists the user's recent files with their status and progress, and a download link
once built, for the user who asked for it or a superuser only. Without a worker
(CELERY_TASK_ALWAYS_EAGER) the file is built once the request's transaction commits."""

from __future__ import annotations

import csv
import io
import uuid
from decimal import Decimal

import openpyxl
import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from billing.exports import LINE_COLUMNS
from billing.models import ReportExport
from tests.billing.finance_data import MONTH, FinanceData, make_finance_data
from tests.gateway_project.management_api import make_staff, session

pytestmark = pytest.mark.django_db

PAGE = "admin:billing_usagereport_changelist"
BUILD = "admin:billing_usagereport_build"


@pytest.fixture(autouse=True)
def _no_worker(settings, tmp_path):
    settings.STATE_DIR = tmp_path
    settings.CELERY_TASK_ALWAYS_EAGER = True


@pytest.fixture
def data() -> FinanceData:
    return make_finance_data()


@pytest.fixture
def finance():
    return session(make_staff("fred", groups=("Finance",)))


def file_url(export: ReportExport) -> str:
    return reverse("admin:billing_reportexport_file", args=[export.pk])


def build(client, capture, **fields: str):
    """POST the build form as the page has it; the response, once the request's
    transaction has committed (when the task runs, without a worker)."""
    with capture(execute=True):
        return client.post(reverse(BUILD), {"kind": "report", "format": "csv", **fields})


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def test_the_page_offers_to_build_a_file_of_its_filters(finance, data):
    page = finance.get(reverse(PAGE), {"tenant": "acme", "month": MONTH, "group_by": "route"})

    html = page.content.decode()
    form = html.split('id="report-build"')[1].split("</form>")[0]
    assert f'action="{reverse(BUILD)}"' in html
    assert 'method="post"' in html.split('id="report-build"')[0].rsplit("<form", 1)[1]
    assert 'name="csrfmiddlewaretoken"' in form
    for name, value in (("tenant", "acme"), ("month", MONTH), ("group_by", "route")):
        assert f'<input type="hidden" name="{name}" value="{value}">' in form
    assert 'value="lines"' in form and 'value="xlsx"' in form
    assert "You have built no report file yet." in html


def test_a_report_file_is_built_listed_and_downloaded(
    finance, data, django_capture_on_commit_callbacks
):
    filters = {"tenant": "acme", "month": MONTH, "group_by": "route"}
    page_total = finance.get(reverse(PAGE), filters).context["total"].cost

    response = build(finance, django_capture_on_commit_callbacks, **filters)

    assert response.status_code == 302
    assert response["Location"] == f"{reverse(PAGE)}?tenant=acme&month={MONTH}&group_by=route"
    export = ReportExport.objects.get()
    assert (export.status, export.progress, export.format) == ("done", 100, "csv")
    assert export.parameters == {**filters, "kind": "report"}
    assert export.requested_by.username == "fred"
    page = finance.get(response["Location"])
    html = page.content.decode()
    [row] = page.context["report_files"]
    assert row.what == f"Usage report by route · acme · {MONTH}"
    assert row.download_url == file_url(export)
    assert 'data-status="done" data-progress="100"' in html
    assert ">100%<" in html
    assert f'href="{file_url(export)}"' in html
    assert 'http-equiv="refresh"' not in html  # nothing left to wait for
    downloaded = finance.get(file_url(export))
    assert downloaded.status_code == 200
    assert downloaded["Content-Type"] == "text/csv; charset=utf-8"
    name = f"usage-{MONTH}-acme-by-route.csv"
    assert downloaded["Content-Disposition"] == f'attachment; filename="{name}"'
    rows = list(csv.reader(io.StringIO(body(downloaded).decode())))
    assert rows[-1][0] == "(total)"
    assert Decimal(rows[-1][-1]) == page_total == data.november_report_cost("acme")


def test_the_ledger_lines_build_as_xlsx(
    finance, data, django_capture_on_commit_callbacks, tmp_path
):
    build(finance, django_capture_on_commit_callbacks, month=MONTH, kind="lines", format="xlsx")

    export = ReportExport.objects.get()
    assert (export.status, export.parameters["kind"], export.format) == ("done", "lines", "xlsx")
    downloaded = finance.get(file_url(export))
    assert downloaded["Content-Type"].startswith("application/vnd.openxmlformats")
    assert f'filename="ledger-lines-{MONTH}-all.xlsx"' in downloaded["Content-Disposition"]
    workbook = tmp_path / "downloaded.xlsx"
    workbook.write_bytes(body(downloaded))
    sheet = list(openpyxl.load_workbook(workbook, read_only=True)["lines"].values)
    assert sheet[0][: len(LINE_COLUMNS)] == LINE_COLUMNS
    assert len(sheet) - 1 == 12  # November's lines of both tenants
    assert sum(Decimal(row[-1]) for row in sheet[1:]) == data.november_cost()


def test_a_running_file_shows_its_progress_and_the_page_reloads_itself(finance, data):
    user = get_user_model().objects.get(username="fred")
    running = ReportExport.objects.create(
        requested_by=user, parameters={"month": MONTH, "kind": "lines"}, format="csv",
        status=ReportExport.Status.RUNNING, progress=42,
    )  # fmt: skip

    page = finance.get(reverse(PAGE), {"month": MONTH})

    html = page.content.decode()
    assert 'data-status="running" data-progress="42"' in html
    assert ">42%<" in html
    assert file_url(running) not in html  # no link before it is built
    refresh = f'<meta http-equiv="refresh" content="5; url={reverse(PAGE)}?month={MONTH}&amp;group_by=model">'
    assert refresh in html
    assert finance.get(file_url(running)).status_code == 404

    ReportExport.objects.filter(pk=running.pk).update(progress=87)
    assert ">87%<" in finance.get(reverse(PAGE), {"month": MONTH}).content.decode()


def test_the_build_needs_the_csrf_token(data):
    user = make_staff("csrf", groups=("Finance",))
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)

    refused = client.post(reverse(BUILD), {"month": MONTH, "kind": "report", "format": "csv"})

    assert refused.status_code == 403
    assert not ReportExport.objects.exists()


def test_a_get_builds_nothing(finance, data):
    assert finance.get(reverse(BUILD), {"month": MONTH}).status_code == 405
    assert not ReportExport.objects.exists()


def test_bad_filters_show_the_page_with_their_errors(
    finance, data, django_capture_on_commit_callbacks
):
    response = build(finance, django_capture_on_commit_callbacks, month="2026-13")

    assert response.status_code == 200
    assert "Write the month as YYYY-MM" in response.content.decode()
    assert not ReportExport.objects.exists()


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"kind": "prompts"}, "kind: Select a valid choice."),
        ({"format": "pdf"}, "format: Select a valid choice."),
    ],
)
def test_a_bad_kind_or_format_is_an_error_message(
    finance, data, django_capture_on_commit_callbacks, fields, error
):
    response = build(finance, django_capture_on_commit_callbacks, month=MONTH, **fields)

    assert response.status_code == 302
    page = finance.get(response["Location"]).content.decode()
    assert "No file built" in page and error in page
    assert not ReportExport.objects.exists()


def test_building_needs_add_reportexport_and_lines_need_the_ledger(
    data, django_capture_on_commit_callbacks
):
    reader = session(make_staff("rita", "billing.view_dailyusage"))
    builder = session(make_staff("bob", "billing.view_dailyusage", "billing.add_reportexport"))

    page = reader.get(reverse(PAGE), {"month": MONTH}).content.decode()
    refused = build(reader, django_capture_on_commit_callbacks, month=MONTH)
    offered = builder.get(reverse(PAGE), {"month": MONTH}).content.decode()
    lines = build(builder, django_capture_on_commit_callbacks, month=MONTH, kind="lines")

    assert 'id="report-build"' not in page and 'id="report-files"' not in page
    assert refused.status_code == 403
    assert 'id="report-build"' in offered and 'value="lines"' not in offered
    assert lines.status_code == 302
    assert not ReportExport.objects.exists()


def test_only_the_owner_or_a_superuser_downloads_a_file(
    finance, data, django_capture_on_commit_callbacks, admin_client
):
    build(finance, django_capture_on_commit_callbacks, month=MONTH)
    export = ReportExport.objects.get()
    colleague = session(make_staff("carla", groups=("Finance",)))

    assert finance.get(file_url(export)).status_code == 200
    assert colleague.get(file_url(export)).status_code == 404
    assert admin_client.get(file_url(export)).status_code == 200
    assert finance.get(file_url(ReportExport(pk=uuid.uuid4()))).status_code == 404
    # Not on the colleague's page either.
    assert colleague.get(reverse(PAGE), {"month": MONTH}).context["report_files"] == []


def test_the_report_files_admin_links_the_download_for_the_owner_and_superusers(
    finance, data, django_capture_on_commit_callbacks, admin_client
):
    build(finance, django_capture_on_commit_callbacks, month=MONTH)
    export = ReportExport.objects.get()
    colleague = session(make_staff("carla", groups=("Finance",)))
    changelist = reverse("admin:billing_reportexport_changelist")
    change = reverse("admin:billing_reportexport_change", args=[export.pk])

    for client in (finance, admin_client):
        assert f'href="{file_url(export)}"' in client.get(changelist).content.decode()
        assert f'href="{file_url(export)}"' in client.get(change).content.decode()
    listed = colleague.get(changelist)
    assert listed.status_code == 200 and str(export.pk) in listed.content.decode()
    assert file_url(export) not in listed.content.decode()
    assert file_url(export) not in colleague.get(change).content.decode()
