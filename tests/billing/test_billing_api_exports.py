"""Report files through the management API (/api/v1/billing/exports/), and the OpenAPI
schema that lists the billing endpoints (/api/v1/schema/)."""

from __future__ import annotations

import csv
import io
from datetime import date

import openpyxl
import pytest
from django.contrib.auth import get_user_model

from billing.models import ReportExport
from billing.tasks import billing_report_build
from tests.billing.reporting_support import line, usage, utc
from tests.factories import make_key, make_tenant
from tests.gateway_project.management_api import (
    assert_envelope,
    json_post,
    make_staff,
    token_client,
)

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway_project.management_api")]

EXPORTS = "/api/v1/billing/exports/"
EXPORTING = (
    "billing.add_reportexport",
    "billing.view_reportexport",
    "billing.view_dailyusage",
)


@pytest.fixture(autouse=True)
def _no_worker(settings, tmp_path):
    settings.STATE_DIR = tmp_path
    settings.CELERY_TASK_ALWAYS_EAGER = True


@pytest.fixture
def acme():
    tenant = make_tenant("acme")
    issued = make_key(tenant)
    usage(tenant, date(2027, 3, 4), cost="3.1400000000", key_prefix=issued.api_key.prefix)
    line(tenant, utc(2027, 3, 4, 8), key_prefix=issued.api_key.prefix)
    return issued


def post(client, django_capture_on_commit_callbacks, body: dict):
    with django_capture_on_commit_callbacks(execute=True):
        return json_post(client, EXPORTS, body)


@pytest.mark.django_db(transaction=True)
def test_an_export_is_built_inline_without_a_worker_and_downloaded_by_its_owner(acme):
    owner = token_client(make_staff("fiona", *EXPORTING))
    response = json_post(owner, EXPORTS, {"month": "2027-03", "format": "xlsx"})
    # In autocommit the export's row commits at once, so its task ran inline, in the request.
    assert response.status_code == 201, response.content
    export = ReportExport.objects.get()
    assert export.status == "done"
    detail = owner.get(f"{EXPORTS}{export.id}/").json()
    assert (detail["status"], detail["progress"], detail["format"]) == ("done", 100, "xlsx")
    assert detail["download"] == f"http://testserver{EXPORTS}{export.id}/download/"
    download = owner.get(detail["download"])
    assert download.status_code == 200
    assert download["Content-Disposition"] == (
        'attachment; filename="usage-2027-03-all-by-model.xlsx"'
    )
    body = b"".join(download.streaming_content)
    assert int(download["Content-Length"]) == len(body)
    book = openpyxl.load_workbook(io.BytesIO(body), read_only=True)
    assert list(book["usage"].iter_rows(values_only=True))[-1][-1] == "3.1400000000"
    listed = owner.get(EXPORTS).json()
    assert [item["id"] for item in listed["results"]] == [str(export.id)]


def test_the_answer_says_201_when_built_and_202_while_a_worker_builds_it(
    acme, django_capture_on_commit_callbacks, monkeypatch
):
    owner = token_client(make_staff("fiona", *EXPORTING))
    with django_capture_on_commit_callbacks(execute=False) as queued:
        response = json_post(owner, EXPORTS, {"month": "2027-03", "format": "csv"})
    assert response.status_code == 202
    assert response.json()["status"] == "pending"
    assert response.json()["download"] is None
    export_id = response.json()["id"]
    download = owner.get(f"{EXPORTS}{export_id}/download/")
    assert_envelope(download, 409, "invalid_request_error", "export_not_ready")
    assert len(queued) == 1
    billing_report_build(export_id)
    rows = list(
        csv.reader(io.StringIO(b"".join(owner.get(f"{EXPORTS}{export_id}/download/")).decode()))
    )
    assert rows[-1] == ["(total)", "1", "100", "50", "0", "0", "150", "3.1400000000"]


def test_another_user_cannot_see_or_download_an_export_but_a_superuser_can(
    acme, django_capture_on_commit_callbacks
):
    owner = token_client(make_staff("fiona", *EXPORTING))
    response = post(
        owner, django_capture_on_commit_callbacks, {"month": "2027-03", "format": "csv"}
    )
    export_id = response.json()["id"]
    other = token_client(make_staff("otto", *EXPORTING))
    for url in (f"{EXPORTS}{export_id}/", f"{EXPORTS}{export_id}/download/"):
        assert_envelope(other.get(url), 404, "invalid_request_error", "not_found")
    assert other.get(EXPORTS).json()["results"] == []
    boss = get_user_model().objects.create_user("root", is_staff=True, is_superuser=True)
    assert token_client(boss).get(f"{EXPORTS}{export_id}/download/").status_code == 200


def test_exporting_ledger_lines_needs_the_ledger_permission(
    acme, django_capture_on_commit_callbacks
):
    body = {"month": "2027-03", "kind": "lines", "format": "csv"}
    without = token_client(make_staff("fiona", *EXPORTING))
    assert_envelope(
        post(without, django_capture_on_commit_callbacks, body), 403, "permission_error"
    )
    allowed = token_client(make_staff("lena", *EXPORTING, "billing.view_usageline"))
    export_id = post(allowed, django_capture_on_commit_callbacks, body).json()["id"]
    download = allowed.get(f"{EXPORTS}{export_id}/download/")
    text = b"".join(download.streaming_content).decode()
    assert acme.api_key.prefix in text
    assert acme.plaintext not in text


def test_starting_an_export_needs_the_add_and_usage_permissions(acme):
    for missing in ("billing.add_reportexport", "billing.view_dailyusage"):
        client = token_client(make_staff(f"no-{missing}", *(p for p in EXPORTING if p != missing)))
        response = json_post(client, EXPORTS, {"month": "2027-03", "format": "csv"})
        assert_envelope(response, 403, "permission_error")
    assert not ReportExport.objects.exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"month": "2027-03"}, "format"),
        ({"month": "2027-03", "format": "pdf"}, "format"),
        ({"month": "2027-03", "format": "json", "kind": "lines"}, "format"),
        ({"month": "2027-3", "format": "csv"}, "month"),
        ({"format": "csv"}, "month"),
        ({"month": "2027-03", "format": "csv", "tenant": "initech"}, "tenant"),
    ],
)
def test_bad_export_requests_are_a_400_in_the_envelope(acme, body, param):
    client = token_client(make_staff("fiona", *EXPORTING, "billing.view_usageline"))
    error = assert_envelope(json_post(client, EXPORTS, body), 400, "invalid_request_error")
    assert error["param"] == param
    assert not ReportExport.objects.exists()


# --- the schema --------------------------------------------------------------------------------


def test_the_schema_lists_the_billing_endpoints_with_their_parameters(db):
    response = token_client(make_staff("nobody")).get(
        "/api/v1/schema/", headers={"Accept": "application/vnd.oai.openapi+json"}
    )
    assert response.status_code == 200, response.content
    schema = response.json()
    paths = schema["paths"]
    for path in (
        "/api/v1/billing/usage/",
        "/api/v1/billing/usage.csv",
        "/api/v1/billing/lines.csv",
        "/api/v1/billing/statements/{tenant}/{month}/",
        "/api/v1/billing/exports/",
        "/api/v1/billing/exports/{id}/",
        "/api/v1/billing/exports/{id}/download/",
        "/api/v1/tenants/",
    ):
        assert path in paths, path
    usage = {p["name"]: p for p in paths["/api/v1/billing/usage/"]["get"]["parameters"]}
    assert {"tenant", "month", "start", "end", "group_by", "tag_key", "page", "page_size"} <= set(
        usage
    )
    assert usage["group_by"]["schema"]["enum"] == ["day", "key", "model", "route", "tag", "tenant"]
    assert "post" in paths["/api/v1/billing/exports/"]
    # The management API's only: not the proxy's (ninja has its own schema at /docs).
    assert not any(path.startswith("/v1/") for path in paths)


def test_the_schema_is_for_staff_only(db, client):
    assert_envelope(client.get("/api/v1/schema/"), 401, "invalid_request_error")
