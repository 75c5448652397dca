"""Closing a month from the admin (billing/close_views.py): a preview, then the close
through billing.closing.period_close, for whoever may add statements (Finance)."""

from __future__ import annotations

import pytest
from django.urls import reverse

from billing.models import Statement, UsageLine
from tests import factories
from tests.billing.ledger_lines import line, local, priced_model
from tests.gateway_project.management_api import make_staff, session

pytestmark = pytest.mark.django_db

CLOSE = "admin:billing_statement_close"


@pytest.fixture
def usage():
    acme = factories.make_tenant("acme")
    priced = priced_model()
    line(acme, local("2026-09-10 12:00"), priced)
    line(acme, local("2026-10-31 23:59:59"), priced)
    return acme


@pytest.fixture
def finance():
    return session(make_staff("fred", groups=("Finance",)))


def test_the_preview_lists_the_months_a_close_would_issue_and_closes_nothing(finance, usage):
    answer = finance.post(reverse(CLOSE), {"month": "2026-10", "preview": "1"})
    assert answer.status_code == 200
    page = answer.content.decode()
    assert "2026-09, 2026-10" in page  # September closes first
    assert 'name="confirm"' in page
    assert not Statement.objects.exists()


def test_confirming_closes_in_order_and_records_who(finance, usage):
    answer = finance.post(reverse(CLOSE), {"month": "2026-10", "confirm": "1"})
    assert answer.status_code == 302
    assert answer["location"] == reverse("admin:billing_statement_changelist")
    statements = list(Statement.objects.order_by("number"))
    assert [s.month for s in statements] == ["2026-09", "2026-10"]
    assert {s.closed_by.username for s in statements} == {"fred"}
    assert not UsageLine.objects.filter(statement_id__isnull=True).exists()
    listing = finance.get(answer["location"]).content.decode()
    assert "2 statement(s) issued" in listing and statements[0].number in listing


def test_a_month_that_may_not_close_yet_says_why_and_offers_no_confirm(finance, usage, settings):
    settings.BILLING_CLOSE_GRACE_MINUTES = 60 * 24 * 365 * 10  # the months have not "ended"
    page = finance.post(reverse(CLOSE), {"month": "2026-10", "preview": "1"}).content.decode()
    assert "cannot be closed before" in page
    assert 'name="confirm"' not in page
    forced = finance.post(reverse(CLOSE), {"month": "2026-10", "confirm": "1"})
    assert forced.status_code == 200 and "cannot be closed before" in forced.content.decode()
    assert not Statement.objects.exists()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"month": "2026-13"}, "A month is written YYYY-MM."),
        ({"month": "2026-10", "tenant": "nobody"}, "No tenant"),
        ({"month": ""}, "This field is required."),
    ],
)
def test_bad_input_is_a_form_error(finance, usage, data, message):
    answer = finance.post(reverse(CLOSE), {**data, "confirm": "1"})
    assert answer.status_code == 200
    assert message in answer.content.decode()
    assert not Statement.objects.exists()


def test_only_who_may_add_statements_can_close(usage):
    ops = session(make_staff("olga", groups=("Ops",)))
    assert ops.get(reverse(CLOSE)).status_code == 403
    assert ops.post(reverse(CLOSE), {"month": "2026-10", "confirm": "1"}).status_code == 403
    assert not Statement.objects.exists()


def test_the_statements_list_links_the_page_for_finance_only(finance, usage):
    assert (
        reverse(CLOSE)
        in finance.get(reverse("admin:billing_statement_changelist")).content.decode()
    )
    reader = session(make_staff("rita", "billing.view_statement"))
    listing = reader.get(reverse("admin:billing_statement_changelist"))
    assert listing.status_code == 200 and reverse(CLOSE) not in listing.content.decode()
