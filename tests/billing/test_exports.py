"""Report and ledger-line downloads (billing/exports.py): CSV chunks and XLSX workbooks,
read back."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal

import openpyxl
import pytest

from billing import exports
from billing.models import TenantTerms
from billing.reports import parse_report_query, usage_report
from tests.billing.reporting_support import line, tags, usage, utc
from tests.factories import make_key, make_tenant

pytestmark = pytest.mark.django_db

MARCH = "2027-03"


@pytest.fixture
def acme():
    return make_tenant("acme")


@pytest.fixture
def march(acme):
    usage(acme, date(2027, 3, 1), cost="1.2345678901", tags=tags(team="search"))
    usage(acme, date(2027, 3, 2), cost="0.0000000009", requests=2, tags=tags(team="=1+2"))
    return usage_report(parse_report_query({"month": MARCH, "group_by": "tag", "tag_key": "team"}))


def read_csv(chunks) -> list[list[str]]:
    return list(csv.reader(io.StringIO("".join(chunks))))


def query(**parameters: str):
    return parse_report_query({"month": MARCH, **parameters})


# --- the report --------------------------------------------------------------------------------


def test_report_csv_has_a_row_per_group_then_the_total_with_exact_costs(march):
    rows = read_csv(exports.report_csv(march))
    assert rows[0] == [
        "tag:team",
        "requests",
        "prompt_tokens",
        "completion_tokens",
        "cached_tokens",
        "reasoning_tokens",
        "total_tokens",
        "cost_usd",
    ]
    assert rows[1] == ["search", "1", "100", "50", "0", "0", "150", "1.2345678901"]
    # A label that a spreadsheet would take for a formula is defused.
    assert rows[2][0] == "'=1+2"
    assert rows[2][-1] == "0.0000000009"
    assert rows[3] == ["(total)", "3", "200", "100", "0", "0", "300", "1.2345678910"]


def test_report_json_has_rows_with_decimal_strings_and_a_total(march):
    body = exports.report_json(march)
    assert body["query"] == {"month": MARCH, "group_by": "tag", "tag_key": "team"}
    assert body["rows"][0] == {
        "group": "search",
        "requests": 1,
        "prompt_tokens": 100,
        "completion_tokens": 50,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "total_tokens": 150,
        "cost": "1.2345678901",
    }
    assert body["total"]["cost"] == "1.2345678910"
    json.dumps(body)  # JSON-ready as it is


def test_report_xlsx_reads_back_with_numbers_and_exact_costs(march, tmp_path):
    path = tmp_path / "report.xlsx"
    exports.report_xlsx(march, path)
    book = openpyxl.load_workbook(path, read_only=True)
    assert book.sheetnames == ["usage", "by day", "query"]
    rows = list(book["usage"].iter_rows(values_only=True))
    assert rows[0][-2:] == ("cost_usd", "cost_usd_exact")
    assert rows[1][:2] == ("search", 1)
    assert rows[1][-2] == pytest.approx(1.2345678901)
    assert rows[1][-1] == "1.2345678901"
    assert rows[2][0] == "=1+2"  # a string cell, not a formula
    assert rows[-1][0] == "(total)"
    assert Decimal(rows[-1][-1]) == march.total.cost
    by_day = list(book["by day"].iter_rows(values_only=True))
    assert len(by_day) == 1 + 31
    assert by_day[1][0] == "2027-03-01"
    about = dict(book["query"].iter_rows(values_only=True))
    assert about["month"] == MARCH
    assert about["as_of"]


# --- the ledger lines --------------------------------------------------------------------------


def test_ledger_lines_csv_has_each_line_without_secrets_prompts_or_end_users(acme):
    issued = make_key(acme)
    line(
        acme,
        utc(2027, 3, 10, 12, 30),
        key_prefix=issued.api_key.prefix,
        metadata={"tags": {"team": "search", "env": "prod"}, "user": "end-user-42"},
    )
    line(acme, utc(2027, 4, 1), request_id="req_april")  # after March (UTC)
    text = "".join(exports.ledger_lines_csv(query()))
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == list(exports.LINE_COLUMNS)
    assert len(rows) == 1
    assert rows[0]["created_at"] == "2027-03-10T12:30:00+00:00"
    assert rows[0]["tenant"] == "acme"
    assert rows[0]["key_prefix"] == issued.api_key.prefix
    assert rows[0]["cost_usd"] == "0.0012345678"
    assert rows[0]["tags"] == '{"env":"prod","team":"search"}'
    assert (rows[0]["prompt_tokens"], rows[0]["cached_tokens"]) == ("100", "20")
    assert issued.plaintext not in text
    assert "end-user-42" not in text


def test_ledger_lines_follow_each_tenants_billing_time_zone(acme):
    rome = make_tenant("rome")
    TenantTerms.objects.create(tenant=rome, time_zone="Europe/Rome")
    # 23:30 UTC on Feb 28 is already March 1 in Rome; 23:30 UTC on March 31 is April there.
    line(rome, utc(2027, 2, 28, 23, 30), request_id="rome_first")
    line(rome, utc(2027, 3, 31, 23, 30), request_id="rome_april")
    line(acme, utc(2027, 2, 28, 23, 30), request_id="acme_february")
    line(acme, utc(2027, 3, 31, 23, 30), request_id="acme_last")
    line(None, utc(2027, 3, 5), request_id="no_tenant")

    def ids(**parameters: str) -> list[str]:
        return [line.request_id for line in exports.ledger_lines(query(**parameters))]

    assert ids() == ["rome_first", "no_tenant", "acme_last"]
    assert ids(tenant="rome") == ["rome_first"]
    assert ids(tenant="acme") == ["acme_last"]


def test_ledger_lines_csv_comes_in_chunks(acme, monkeypatch):
    monkeypatch.setattr(exports, "CHUNK_ROWS", 3)
    for minute in range(7):
        line(acme, utc(2027, 3, 1, 0, minute))
    chunks = list(exports.ledger_lines_csv(query()))
    assert len(chunks) == 3  # the header and 3 rows, 3 rows, 1 row
    assert len(read_csv(chunks)) == 1 + 7


def test_ledger_lines_xlsx_reads_back_and_goes_on_in_a_new_sheet_when_one_is_full(
    acme, monkeypatch, tmp_path
):
    monkeypatch.setattr(exports, "XLSX_MAX_ROWS", 4)  # a header and 3 lines a sheet
    for minute in range(7):
        line(acme, utc(2027, 3, 1, 0, minute), cost_usd=Decimal("0.0000000001") * minute)
    path = tmp_path / "lines.xlsx"
    assert exports.ledger_lines_xlsx(query(), path) == 7
    book = openpyxl.load_workbook(path, read_only=True)
    assert book.sheetnames == ["lines", "lines 2", "lines 3"]
    rows = [row for sheet in book for row in list(sheet.iter_rows(values_only=True))[1:]]
    header = next(book["lines"].iter_rows(values_only=True))
    assert header == (*exports.LINE_COLUMNS, "cost_usd_exact")
    assert len(rows) == 7
    assert rows[6][header.index("cost_usd_exact")] == "0.0000000006"
    assert rows[6][header.index("prompt_tokens")] == 100
    assert rows[0][header.index("tags")] == '{"team":"search"}'


def test_an_empty_ledger_export_still_has_its_header(acme, tmp_path):
    assert read_csv(exports.ledger_lines_csv(query())) == [list(exports.LINE_COLUMNS)]
    path = tmp_path / "empty.xlsx"
    assert exports.ledger_lines_xlsx(query(), path) == 0
    sheet = openpyxl.load_workbook(path, read_only=True)["lines"]
    assert len(list(sheet.iter_rows(values_only=True))) == 1
