"""The Usage & billing page: filters, table, chart, downloads and statement links, over
data made by the real pipeline (tests/billing/finance_data.py: ledger lines, roll-ups,
closes). What the page shows must be what billing.reports.usage_report says, which must be
what the ledger says; the downloads must say what the page says."""

from __future__ import annotations

import csv
import io
import re
import tempfile
from decimal import Decimal

import openpyxl
import pytest
from django.http import StreamingHttpResponse
from django.urls import reverse
from django.utils import timezone

from billing.exports import COUNT_COLUMNS, LINE_COLUMNS
from billing.reports import ReportQuery, usage_report
from tests.billing.finance_data import DAYS, LATE_DAY, MONTH, FinanceData, make_finance_data
from tests.gateway_project.management_api import make_staff, session

pytestmark = pytest.mark.django_db

PAGE = "admin:billing_usagereport_changelist"


@pytest.fixture
def data() -> FinanceData:
    return make_finance_data()


@pytest.fixture
def finance():
    return session(make_staff("fred", groups=("Finance",)))


def download(source: str, fmt: str) -> str:
    return reverse("admin:billing_usagereport_download", args=[source, fmt])


def cents(value: Decimal) -> str:
    return f"${value.quantize(Decimal('0.01')):,}"


def drawn_days(html: str) -> list[str]:
    """The days whose cost bar the chart draws (a height above zero)."""
    bars = re.findall(r'<rect class="cost-bar"[^>]* height="([^"]+)"\s+data-day="([^"]+)"', html)
    return [day for height, day in bars if float(height) > 0]


def csv_rows(response) -> list[list[str]]:
    return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))


def test_the_admin_index_lists_usage_and_billing_for_finance(finance):
    index = finance.get(reverse("admin:index"))

    assert index.status_code == 200
    assert reverse(PAGE) in index.content.decode()
    assert "Usage &amp; billing" in index.content.decode()


def test_without_filters_the_page_shows_this_months_report_by_model(finance, data):
    response = finance.get(reverse(PAGE))

    assert response.status_code == 200
    this_month = f"{timezone.now():%Y-%m}"
    assert response.context["form"].data == {"month": this_month, "group_by": "model"}
    report = response.context["report"]
    assert report.query == ReportQuery(month=this_month, group_by="model")
    assert response.context["total"].cost == usage_report(report.query).total.cost


def test_finance_sees_a_months_report_by_model(finance, data):
    response = finance.get(reverse(PAGE), {"month": MONTH})

    assert response.status_code == 200
    html = response.content.decode()
    report = usage_report(ReportQuery(month=MONTH, group_by="model"))
    rows = response.context["rows"]
    assert [row.group for row in rows] == [row.group for row in report.rows]
    assert sorted(row.group for row in rows) == ["openai/gpt-4o", "openai/gpt-4o-mini"]
    assert [row.cost for row in rows] == [row.cost for row in report.rows]
    # The total is the report's, and the ledger's: November's lines and the late October
    # request November bills.
    total = response.context["total"].cost
    assert total == report.total.cost == data.november_report_cost() > 0
    assert f'data-cost="{total}"' in html
    assert cents(total) in html
    # The chart: inline SVG, a bar and a point per day of the month, drawn on the days
    # with usage; nothing loaded from elsewhere.
    assert html.count('class="cost-bar"') == html.count('class="tokens-point"') == 30
    assert drawn_days(html) == [f"{day}" for day in sorted([LATE_DAY, *DAYS])]
    assert "<script" not in html.split('id="content-main"')[1]
    assert "http" not in html.split('<svg id="usage-chart"')[1].split("</svg>")[0].replace(
        "http://www.w3.org/2000/svg", ""
    )
    for source, fmt in (("usage", "csv"), ("usage", "xlsx"), ("lines", "csv"), ("lines", "xlsx")):
        assert f"{download(source, fmt)}?month={MONTH}&amp;group_by=model" in html
    links = [
        (link.tenant_slug, link.month, link.number) for link in response.context["statement_links"]
    ]
    assert links == [("acme", MONTH, None), ("globex", MONTH, None)]
    assert reverse("admin:billing_statement_print", args=["acme", MONTH]) in html


def test_the_filters_reach_the_report_query(finance, data):
    response = finance.get(
        reverse(PAGE), {"tenant": "acme", "month": MONTH, "group_by": "tag", "tag_key": "team"}
    )

    assert response.status_code == 200
    query = ReportQuery(tenant_slug="acme", month=MONTH, group_by="tag", tag_key="team")
    assert response.context["report"].query == query
    costs = {row.group: row.cost for row in response.context["rows"]}
    acme = data.november["acme"]
    assert costs == {
        "red": sum(line.cost_usd for line in acme if line.metadata["tags"]["team"] == "red"),
        "blue": sum(line.cost_usd for line in acme if line.metadata["tags"]["team"] == "blue"),
        "(none)": data.late_october.cost_usd,  # untagged
    }
    assert response.context["total"].cost == usage_report(query).total.cost
    assert [link.tenant_slug for link in response.context["statement_links"]] == ["acme"]


def test_a_range_of_days_is_a_filter_too(finance, data):
    response = finance.get(
        reverse(PAGE), {"start": "2026-11-03", "end": "2026-11-05", "group_by": "day"}
    )

    assert response.status_code == 200
    assert [row.group for row in response.context["rows"]] == ["2026-11-03", "2026-11-05"]
    html = response.content.decode()
    assert html.count('class="tokens-point"') == 3
    assert drawn_days(html) == ["2026-11-03", "2026-11-05"]


@pytest.mark.parametrize(
    ("filters", "error"),
    [
        ({"month": "2026-13"}, "Write the month as YYYY-MM"),
        ({"month": "november"}, "Write the month as YYYY-MM"),
        ({"start": "2026-11-31"}, "Enter a valid date"),
        ({"tenant": "nobody", "month": MONTH}, "Select a valid choice"),
        ({"month": MONTH, "group_by": "prompt"}, "Select a valid choice"),
        ({"group_by": "model"}, "Choose a month, or a range of days."),
        # parse_report_query's own words, shown as it says them.
        ({"month": MONTH, "start": "2026-11-01"}, "Give a month or a start and end, not both."),
        ({"start": "2026-11-09", "end": "2026-11-01"}, "end is before start."),
        ({"start": "2026-11-09"}, "A date range needs its end too."),
        ({"start": "2025-01-01", "end": "2026-11-01"}, "A report covers at most 366 days"),
        ({"month": MONTH, "tag_key": "team"}, "A tag key goes with group_by=tag."),
    ],
)
def test_bad_filters_are_a_form_error_on_the_page(finance, data, filters, error):
    response = finance.get(reverse(PAGE), filters)

    assert response.status_code == 200
    html = response.content.decode()
    assert error in html
    assert 'class="errorlist' in html
    assert response.context["report"] is None
    assert 'id="usage-table"' not in html


def test_the_report_downloads_as_streamed_csv_and_as_xlsx(finance, data, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the workbook is written
    query = {"tenant": "acme", "month": MONTH, "group_by": "route"}
    page = finance.get(reverse(PAGE), query)
    page_rows = [(row.group, row.cost) for row in page.context["rows"]]
    page_total = page.context["total"].cost

    csv_file = finance.get(download("usage", "csv"), query)
    xlsx = finance.get(download("usage", "xlsx"), query)

    assert isinstance(csv_file, StreamingHttpResponse)
    assert csv_file["Content-Type"] == "text/csv; charset=utf-8"
    assert csv_file["Content-Disposition"] == (
        f'attachment; filename="usage-acme-{MONTH}-by-route.csv"'
    )
    rows = csv_rows(csv_file)
    assert rows[0] == ["route", *COUNT_COLUMNS, "cost_usd"]
    assert [(row[0], Decimal(row[-1])) for row in rows[1:-1]] == page_rows
    assert rows[-1][0] == "(total)"
    assert Decimal(rows[-1][-1]) == page_total == data.november_report_cost("acme")
    assert int(rows[-1][1]) == page.context["report"].total.requests == 4 * 2 + 1

    assert xlsx["Content-Type"].startswith("application/vnd.openxmlformats")
    assert f'filename="usage-acme-{MONTH}-by-route.xlsx"' in xlsx["Content-Disposition"]
    workbook = tmp_path / "downloaded.xlsx"
    workbook.write_bytes(b"".join(xlsx.streaming_content))
    sheet = list(openpyxl.load_workbook(workbook, read_only=True)["usage"].values)
    assert sheet[0][-2:] == ("cost_usd", "cost_usd_exact")
    assert [(row[0], Decimal(row[-1])) for row in sheet[1:-1]] == page_rows
    assert sheet[-1][0] == "(total)"
    assert Decimal(sheet[-1][-1]) == page_total
    assert [path.name for path in tmp_path.iterdir()] == ["downloaded.xlsx"]  # the temp one went


def test_the_ledger_lines_download_with_the_same_filters(finance, data, tmp_path):
    csv_file = finance.get(download("lines", "csv"), {"tenant": "globex", "month": MONTH})
    xlsx = finance.get(download("lines", "xlsx"), {"tenant": "globex", "month": MONTH})

    rows = csv_rows(csv_file)
    assert csv_file["Content-Disposition"] == f'attachment; filename="lines-globex-{MONTH}.csv"'
    assert rows[0] == list(LINE_COLUMNS)
    cost = LINE_COLUMNS.index("cost_usd")
    assert [row[0] for row in rows[1:]] == [line.request_id for line in data.november["globex"]]
    assert sum(Decimal(row[cost]) for row in rows[1:]) == data.november_cost("globex")
    workbook = tmp_path / "lines.xlsx"
    workbook.write_bytes(b"".join(xlsx.streaming_content))
    sheet = list(openpyxl.load_workbook(workbook, read_only=True)["lines"].values)
    assert [row[0] for row in sheet[1:]] == [row[0] for row in rows[1:]]
    assert sum(Decimal(row[-1]) for row in sheet[1:]) == data.november_cost("globex")


def test_the_ledger_lines_are_those_created_in_the_month_not_the_late_ones(finance, data):
    """The lines are by when each request happened: the late October request is in
    October's lines, while November's report counts it (November bills it)."""
    query = {"tenant": "acme", "month": MONTH}
    page_total = finance.get(reverse(PAGE), query).context["total"].cost

    rows = csv_rows(finance.get(download("lines", "csv"), query))[1:]

    cost = LINE_COLUMNS.index("cost_usd")
    assert len(rows) == len(data.november["acme"]) == 8
    assert data.late_october.request_id not in {row[0] for row in rows}
    assert sum(Decimal(row[cost]) for row in rows) == page_total - data.late_october.cost_usd
    october = csv_rows(finance.get(download("lines", "csv"), {**query, "month": "2026-10"}))
    assert data.late_october.request_id in {row[0] for row in october[1:]}


def test_a_download_with_bad_filters_shows_the_page_with_the_error(finance, data):
    response = finance.get(download("usage", "csv"), {"month": "2026-1"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert "Write the month as YYYY-MM" in response.content.decode()
    assert response.context["report"] is None


def test_the_ledger_lines_need_the_ledgers_permission(data):
    reader = session(make_staff("rita", "billing.view_dailyusage"))

    page = reader.get(reverse(PAGE), {"month": MONTH})
    lines = reader.get(download("lines", "csv"), {"month": MONTH})

    assert page.status_code == 200
    assert page.context["total"].cost == data.november_report_cost()
    assert "download-lines-csv" not in page.content.decode()
    # Nor statement links without view_statement, nor building files without
    # add_reportexport.
    assert page.context["statement_links"] is None
    assert 'id="report-build"' not in page.content.decode()
    assert lines.status_code == 403
