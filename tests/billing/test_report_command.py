"""manage.py billing_report: a month's report as JSON, CSV or XLSX, for cron and checks."""

from __future__ import annotations

import csv
import io
import json
from datetime import date
from decimal import Decimal

import openpyxl
import pytest
from django.core.management import CommandError, call_command

from tests.billing.reporting_support import tags, usage
from tests.factories import make_tenant

pytestmark = pytest.mark.django_db


@pytest.fixture
def march():
    acme, globex = make_tenant("acme"), make_tenant("globex")
    usage(acme, date(2027, 3, 1), cost="1.1000000001", tags=tags(team="search"))
    usage(acme, date(2027, 3, 9), cost="0.2", model="gpt-4o-mini", cached=10)
    usage(globex, date(2027, 3, 9), cost="5")


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("billing_report", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_json_lists_rows_with_tokens_by_kind_and_cost_as_a_decimal_string(march):
    body = json.loads(run("--month", "2027-03", "--tenant", "acme", "--format", "json"))
    assert body["rows"] == [
        {
            "group": "openai/gpt-4o",
            "requests": 1,
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "cached_tokens": 0,
            "reasoning_tokens": 0,
            "total_tokens": 150,
            "cost": "1.1000000001",
        },
        {
            "group": "openai/gpt-4o-mini",
            "requests": 1,
            "prompt_tokens": 100,
            "completion_tokens": 50,
            "cached_tokens": 10,
            "reasoning_tokens": 0,
            "total_tokens": 150,
            "cost": "0.2000000000",
        },
    ]
    assert body["total"]["cost"] == "1.3000000001"
    assert body["total"]["requests"] == 2
    assert sum(Decimal(row["cost"]) for row in body["rows"]) == Decimal(body["total"]["cost"])


def test_csv_by_tenant_on_stdout(march):
    rows = list(
        csv.reader(
            io.StringIO(run("--month", "2027-03", "--group-by", "tenant", "--format", "csv"))
        )
    )
    assert [row[0] for row in rows] == ["tenant", "globex", "acme", "(total)"]
    assert rows[-1][-1] == "6.3000000001"


def test_group_by_a_tag_value(march):
    body = json.loads(
        run("--month", "2027-03", "--group-by", "tag", "--tag-key", "team", "--format", "json")
    )
    assert {row["group"]: row["cost"] for row in body["rows"]} == {
        "(none)": "5.2000000000",
        "search": "1.1000000001",
    }


def test_xlsx_and_csv_go_to_the_output_file(march, tmp_path):
    target = tmp_path / "march.xlsx"
    assert run("--month", "2027-03", "--format", "xlsx", "--output", str(target)) == ""
    sheet = openpyxl.load_workbook(target, read_only=True)["usage"]
    assert list(sheet.iter_rows(values_only=True))[-1][-1] == "6.3000000001"
    target = tmp_path / "march.csv"
    run("--month", "2027-03", "--format", "csv", "--output", str(target))
    assert target.read_text().splitlines()[-1].endswith(",6.3000000001")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--month", "2027-3", "--format", "json"), "A month is written YYYY-MM"),
        (("--month", "2027-03", "--tenant", "initech", "--format", "json"), "no tenant"),
        (("--month", "2027-03", "--format", "pdf"), "invalid choice: 'pdf'"),
        (("--month", "2027-03", "--group-by", "colour", "--format", "csv"), "invalid choice"),
        (("--month", "2027-03", "--tag-key", "team", "--format", "csv"), "group_by=tag"),
        (("--month", "2027-03", "--format", "xlsx"), "give --output FILE"),
        (
            (
                "--format",
                "json",
            ),
            "--month",
        ),
        (
            ("--month", "2027-03", "--format", "csv", "--output", "/no/such/dir/x.csv"),
            "Cannot write",
        ),
        (
            ("--month", "2027-03", "--format", "xlsx", "--output", "/no/such/dir/x.xlsx"),
            "Cannot write",
        ),
    ],
)
def test_bad_input_is_a_command_error(march, args, message):
    with pytest.raises(CommandError, match=message):
        run(*args)
