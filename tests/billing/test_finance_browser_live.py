"""Finance in a real browser: headless Debian Chromium, driven by Selenium through
/usr/bin/chromedriver (never Selenium Manager, which would download a browser), against
pytest-django's live server.

A Finance user logs in, opens Usage & billing, filters it, sees the chart, downloads the
report as CSV and XLSX (their totals are the page's, which is the report's and the
ledger's), builds the ledger lines as a file in the background and downloads it once
done, opens a statement (a draft and an issued one) and its PDF. Each page is saved as a
screenshot in var/screenshots/.

The data is made by the real pipeline (tests/billing/finance_data.py): ledger lines,
closes, roll-ups. Without a worker (CELERY_TASK_ALWAYS_EAGER, as in the embedded setup)
the background file is built by the time the POST has answered.
"""

from __future__ import annotations

import csv
import time
import urllib.request
from collections.abc import Iterator
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from billing.exports import LINE_COLUMNS
from billing.reports import ReportQuery, usage_report
from tests.billing.finance_data import (
    DAYS,
    LATE_DAY,
    MONTH,
    FinanceData,
    groups_as_migrated,
    make_finance_data,
)
from tests.billing.pdf_files import pdf_text
from tests.billing.xlsx_files import xlsx_rows
from tests.browser import SCREENSHOTS, chromium
from tests.browser import screenshot as save_screenshot

PASSWORD = "finance-browser-test"

# The live server sees committed rows only.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, Path]]:
    downloads = tmp_path_factory.mktemp("downloads")
    with chromium(tmp_path_factory.mktemp("chromium-profile"), downloads) as driver:
        yield driver, downloads


def screenshot(driver, name: str) -> None:
    save_screenshot(driver, f"finance-{name}")


def downloaded(directory: Path, name: str, timeout: float = 30) -> Path:
    """The file the browser saved as `name`, once it has finished writing it."""
    deadline = time.monotonic() + timeout
    path = directory / name
    while time.monotonic() < deadline:
        partial = [p for p in directory.iterdir() if p.suffix == ".crdownload"]
        if path.exists() and not partial:
            return path
        time.sleep(0.1)
    raise AssertionError(f"no {name} in {directory}: {list(directory.iterdir())}")


def total_cost(table: list[list]) -> Decimal:
    """The exact cost of a report file's "(total)" row (its last): the cost_usd_exact
    column of a workbook, the cost_usd one of a CSV."""
    header = [str(name) for name in table[0]]
    column = header.index("cost_usd_exact" if "cost_usd_exact" in header else "cost_usd")
    assert table[-1][0] == "(total)", table[-1]
    return Decimal(str(table[-1][column]))


def fetch(driver, url: str) -> tuple[str, bytes]:
    """GET `url` with the browser's session cookie: what the link responds with."""
    cookies = "; ".join(f"{c['name']}={c['value']}" for c in driver.get_cookies())
    request = urllib.request.Request(url, headers={"Cookie": cookies})
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.headers["Content-Type"], response.read()


@pytest.fixture
def finance_data(settings, tmp_path) -> FinanceData:
    from django.contrib.auth import get_user_model

    settings.STATE_DIR = tmp_path  # report files are written under it
    settings.CELERY_TASK_ALWAYS_EAGER = True  # no worker: built inline, as embedded
    data = make_finance_data()
    groups_as_migrated()
    user = get_user_model().objects.create_user("fiona", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Finance"))
    return data


def every_day_of(month: str) -> list[str]:
    first = date.fromisoformat(f"{month}-01")
    return [
        f"{first + timedelta(days=n)}"
        for n in range(31)
        if (first + timedelta(days=n)).month == first.month
    ]


def test_finance_reports_downloads_and_statements_in_a_browser(browser, live_server, finance_data):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as until
    from selenium.webdriver.support.ui import Select, WebDriverWait

    driver, downloads = browser
    wait = WebDriverWait(driver, 20).until  # a click returns before the next page is there
    for stale in downloads.iterdir():
        stale.unlink()
    for stale in SCREENSHOTS.glob("finance-*.png"):
        stale.unlink()

    driver.get(f"{live_server.url}{reverse('admin:login')}?next=/admin/")
    driver.find_element(By.NAME, "username").send_keys("fiona")
    driver.find_element(By.NAME, "password").send_keys(PASSWORD)
    driver.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait(until.presence_of_element_located((By.LINK_TEXT, "Usage & billing")))
    assert not driver.find_elements(By.LINK_TEXT, "Audit events")
    assert not driver.find_elements(By.LINK_TEXT, "Api keys")
    screenshot(driver, "1-admin-index")

    # The report: acme's November by route, as billing.reports says, as the ledger says.
    driver.find_element(By.LINK_TEXT, "Usage & billing").click()
    month = wait(until.presence_of_element_located((By.NAME, "month")))
    month.clear()
    month.send_keys(MONTH)
    Select(driver.find_element(By.NAME, "tenant")).select_by_value("acme")
    Select(driver.find_element(By.NAME, "group_by")).select_by_value("route")
    driver.find_element(By.ID, "usage-apply").click()
    wait(until.url_contains(f"month={MONTH}"))
    assert "tenant=acme" in driver.current_url
    assert not driver.find_elements(By.CSS_SELECTOR, ".errorlist")
    report = usage_report(ReportQuery(tenant_slug="acme", month=MONTH, group_by="route"))

    # The chart: a bar and a point per day of the month, bars drawn on the days with
    # usage (November 1st holds the late October request).
    bars = driver.find_elements(By.CSS_SELECTOR, "svg#usage-chart rect.cost-bar")
    points = driver.find_elements(By.CSS_SELECTOR, "svg#usage-chart circle.tokens-point")
    assert [p.get_attribute("data-day") for p in points] == every_day_of(MONTH)
    drawn = [
        bar.get_attribute("data-day") for bar in bars if float(bar.get_attribute("height")) > 0
    ]
    assert drawn == [f"{day}" for day in sorted([LATE_DAY, *DAYS])]
    cells = driver.find_elements(By.CSS_SELECTOR, "#usage-table tbody tr td:first-child")
    assert [cell.text for cell in cells] == [row.group for row in report.rows]
    assert sorted(cell.text for cell in cells) == ["chat", "fast"]
    page_total = Decimal(
        driver.find_element(By.CSS_SELECTOR, "#usage-total td[data-cost]").get_attribute(
            "data-cost"
        )
    )
    assert page_total == report.total.cost == finance_data.november_report_cost("acme") > 0
    screenshot(driver, "2-usage-report")

    driver.find_element(By.ID, "download-usage-csv").click()
    stem = f"usage-acme-{MONTH}-by-route"
    with downloaded(downloads, f"{stem}.csv").open(newline="") as file:
        assert total_cost(list(csv.reader(file))) == page_total
    driver.find_element(By.ID, "download-usage-xlsx").click()
    assert total_cost(xlsx_rows(downloaded(downloads, f"{stem}.xlsx"))) == page_total

    # A long one in the background: the ledger lines, as CSV. Without a worker it is done
    # when the page comes back; then downloaded from the list.
    Select(driver.find_element(By.NAME, "kind")).select_by_value("lines")
    Select(driver.find_element(By.NAME, "format")).select_by_value("csv")
    driver.find_element(By.ID, "report-build-submit").click()
    done = wait(
        until.presence_of_element_located((By.CSS_SELECTOR, "tr.report-file[data-status=done]"))
    )
    assert "tenant=acme" in driver.current_url  # back on the same filters
    assert done.find_element(By.CSS_SELECTOR, ".report-file-progress").text == "100%"
    assert "The file is built" in driver.find_element(By.CSS_SELECTOR, ".messagelist").text
    screenshot(driver, "3-report-file")
    done.find_element(By.CSS_SELECTOR, "a.report-file-download").click()
    with downloaded(downloads, f"ledger-lines-{MONTH}-acme.csv").open(newline="") as file:
        lines = list(csv.reader(file))
    assert lines[0] == list(LINE_COLUMNS)
    cost = LINE_COLUMNS.index("cost_usd")
    assert len(lines) - 1 == len(finance_data.november["acme"])
    assert sum(Decimal(row[cost]) for row in lines[1:]) == finance_data.november_cost("acme")

    # acme's November is open: its statement is a draft.
    driver.find_element(By.CSS_SELECTOR, "#usage-statements a.statement-link").click()
    wait(until.text_to_be_present_in_element((By.ID, "statement-number"), "DRAFT"))
    assert "Acme (acme)" in driver.find_element(By.ID, "statement-tenant").text
    screenshot(driver, "4-statement-draft")

    # October is closed: its statement, by its number, and its PDF.
    number = finance_data.statement.number
    driver.get(f"{live_server.url}{reverse('admin:billing_statement_changelist')}")
    row = f"//tr[.//*[normalize-space(text())='{number}']]"
    wait(until.presence_of_element_located((By.XPATH, row)))
    screenshot(driver, "5-statements")
    driver.find_element(By.XPATH, f"{row}//a[text()='printable']").click()
    wait(until.text_to_be_present_in_element((By.ID, "statement-number"), number))
    assert driver.find_element(By.ID, "statement-total").text == "EUR 4.14"
    adjustments = driver.find_elements(By.CSS_SELECTOR, "#statement-adjustments tbody tr")
    assert [row.text.split(" usage of ")[1][:7] for row in adjustments] == ["2026-09"]
    screenshot(driver, "6-statement-issued")

    content_type, body = fetch(
        driver, driver.find_element(By.ID, "statement-pdf").get_attribute("href")
    )
    assert content_type == "application/pdf"
    assert body.startswith(b"%PDF-")
    assert f"Statement {number}" in pdf_text(body)
    assert sorted(p.name for p in SCREENSHOTS.glob("finance-*.png")) == [
        "finance-1-admin-index.png",
        "finance-2-usage-report.png",
        "finance-3-report-file.png",
        "finance-4-statement-draft.png",
        "finance-5-statements.png",
        "finance-6-statement-issued.png",
    ]
