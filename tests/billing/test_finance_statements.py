"""Statements in Finance's admin: the printable page and the PDF of an issued statement
(made by billing.closing.period_close) and of a draft (billing.statements.statement_get
of an open month), and the read-only admins of statements, roll-ups and report files."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.urls import reverse

from billing.models import DailyUsage, ReportExport, Statement
from billing.reports import ReportQuery, usage_report
from tests.billing.finance_data import CLOSED_MONTH, MONTH, FinanceData, make_finance_data
from tests.billing.pdf_files import pdf_text
from tests.gateway_project.management_api import make_staff, session

pytestmark = pytest.mark.django_db


@pytest.fixture
def data() -> FinanceData:
    return make_finance_data()


@pytest.fixture
def finance():
    return session(make_staff("fred", groups=("Finance",)))


def printable(tenant_slug: str, month: str) -> str:
    return reverse("admin:billing_statement_print", args=[tenant_slug, month])


def pdf(tenant_slug: str, month: str) -> str:
    return reverse("admin:billing_statement_pdf", args=[tenant_slug, month])


def test_an_issued_statement_prints_with_its_lines_adjustments_and_totals(finance, data):
    response = finance.get(printable("acme", CLOSED_MONTH))

    assert response.status_code == 200
    html = response.content.decode()
    number = data.statement.number
    assert re.fullmatch(r"ST-\d{4}-000002", number)  # September's is the first
    assert f"Statement {number}" in html
    assert f'id="statement-number">{number}<' in html
    assert "Acme (acme)" in html
    assert "2026-10-01 00:00 to 2026-11-01 00:00 (Europe/Paris)" in html
    assert "1 USD = 0.92 EUR" in html
    # October's request: 800,000 input, 200,000 cached (at the input price: the version
    # has no cached price) and 200,000 output tokens.
    for quantity, price, amount in (
        ("800,000", "$2.50 / 1M", "$2.0000"),
        ("200,000", "$2.50 / 1M", "$0.5000"),
        ("200,000", "$10.00 / 1M", "$2.0000"),
    ):
        assert re.search(rf"{quantity}</td>\s*<td[^>]*>{re.escape(price)}</td>\s*<td[^>]*>"
                         rf"{re.escape(amount)}<", html), (quantity, price, amount)  # fmt: skip
    # The September request that arrived after September closed.
    adjustments = html.split('id="statement-adjustments"')[1].split("</table>")[0]
    assert "usage of 2026-09" in adjustments and "$0.5000" in adjustments
    assert "Discount (10%)" in html and "-$0.50" in html
    assert '"statement-total-usd">$4.50<' in html
    assert '"statement-total">EUR 4.14<' in html
    assert "@media print" in html
    assert "DRAFT" not in html


def test_a_closed_months_report_is_its_statements_subtotal_and_adjustments(data):
    report = usage_report(ReportQuery(tenant_slug="acme", month=CLOSED_MONTH))

    assert report.total.cost == data.statement.subtotal_usd + data.statement.adjustments_usd


def test_an_open_month_prints_as_a_draft_of_its_unbilled_lines(finance, data):
    response = finance.get(printable("globex", MONTH))

    html = response.content.decode()
    assert response.status_code == 200
    assert "Statement DRAFT" in html
    assert 'id="statement-number">DRAFT<' in html
    assert "DRAFT: this month is not closed" in html
    assert "not closed: a draft, figures may still change" in html
    # globex pays list prices in USD: its draft is its ledger's November.
    total = data.november_cost("globex").quantize(Decimal("0.01"))
    assert f'"statement-total-usd">${total}<' in html
    assert f'"statement-total">USD {total}<' in html
    assert not Statement.objects.filter(tenant_slug="globex").exists()


def test_the_first_open_months_draft_bills_the_late_usage_of_the_closed_one(finance, data):
    html = finance.get(printable("acme", MONTH)).content.decode()

    assert "Statement DRAFT" in html
    adjustments = html.split('id="statement-adjustments"')[1].split("</table>")[0]
    assert "usage of 2026-10" in adjustments
    assert "40,000" in adjustments  # the late request's input tokens
    assert "not fixed yet for 2026-11" in html  # no EUR rate for November yet
    assert "pending: no EUR rate for 2026-11 yet" in html


def test_the_statement_pdf_is_a_pdf_of_the_same_statement(finance, data):
    number = data.statement.number

    response = finance.get(pdf("acme", CLOSED_MONTH))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert f'filename="statement-acme-2026-10-{number}.pdf"' in response["Content-Disposition"]
    assert response.content.startswith(b"%PDF-")
    text = pdf_text(response.content)
    for expected in (f"Statement {number}", "Acme (acme)", "EUR 4.14", "usage of 2026-09"):
        assert expected in text, text
    assert "DRAFT" not in text


def test_a_drafts_pdf_says_draft(finance, data):
    response = finance.get(pdf("globex", MONTH))

    assert response.status_code == 200
    assert f'filename="statement-globex-{MONTH}-draft.pdf"' in response["Content-Disposition"]
    assert "Statement DRAFT" in pdf_text(response.content)


def test_an_unknown_tenant_or_month_is_not_found(finance, data):
    assert finance.get(printable("nobody", MONTH)).status_code == 404
    assert finance.get("/admin/billing/statement/print/acme/2026-13/").status_code == 404
    assert finance.get(pdf("nobody", MONTH)).status_code == 404
    # A month before acme's first statement is closed, with nothing billed: no statement.
    closed_empty = finance.get(printable("acme", "2026-08"))
    assert closed_empty.status_code == 404
    assert finance.get(pdf("acme", "2026-08")).status_code == 404


def test_statements_roll_ups_and_report_files_are_read_only_in_the_admin(finance, data):
    export = ReportExport.objects.create(parameters={"month": MONTH}, format="csv")
    statement = data.statement
    change = reverse("admin:billing_statement_change", args=[statement.pk])

    pages = [
        finance.get(reverse("admin:billing_statement_changelist")),
        finance.get(change),
        finance.get(reverse("admin:billing_dailyusage_changelist")),
        finance.get(
            reverse("admin:billing_dailyusage_change", args=[DailyUsage.objects.first().pk])
        ),
        finance.get(reverse("admin:billing_reportexport_changelist")),
        finance.get(reverse("admin:billing_reportexport_change", args=[export.pk])),
    ]

    assert [page.status_code for page in pages] == [200] * 6
    listed = pages[0].content.decode()
    assert statement.number in listed and "EUR 4.14" in listed
    detail = pages[1].content.decode()
    assert "usage of" not in detail  # the inline shows the raw adjustment_of column
    assert "2026-09" in detail and "800000" in detail  # its lines, inline
    assert printable("acme", CLOSED_MONTH) in detail
    assert finance.get(reverse("admin:billing_statement_add")).status_code == 403
    assert finance.post(change, {"number": "ST-2026-999999"}).status_code == 403
    delete = reverse("admin:billing_statement_delete", args=[statement.pk])
    assert finance.post(delete, {"post": "yes"}).status_code == 403
    assert Statement.objects.get(pk=statement.pk).number == statement.number
