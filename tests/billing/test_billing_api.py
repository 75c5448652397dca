"""The billing endpoints of the management API (billing/rest.py): usage, its CSV, the ledger
lines, statements; each with its model permission, errors in the envelope."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from billing import statements
from billing.statements import StatementLineView, StatementView
from tests.billing.reporting_support import line, tags, usage, utc
from tests.factories import make_key, make_tenant
from tests.gateway_project.management_api import (
    assert_envelope,
    make_staff,
    session,
    token_client,
)

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway_project.management_api")]

USAGE = "/api/v1/billing/usage/"


@pytest.fixture
def acme():
    tenant = make_tenant("acme")
    issued = make_key(tenant)
    for day in range(1, 6):
        usage(
            tenant,
            date(2027, 3, day),
            cost=f"0.{day}000000001",
            route=f"route-{day}",
            key_prefix=issued.api_key.prefix,
            tags=tags(team="search" if day % 2 else "ads"),
        )
    line(tenant, utc(2027, 3, 2, 10), key_prefix=issued.api_key.prefix)
    return issued


@pytest.fixture
def finance():
    return token_client(make_staff("fiona", "billing.view_dailyusage", "billing.view_usageline"))


def streamed(response) -> str:
    assert response.status_code == 200, response.content
    assert response.streaming
    return b"".join(response.streaming_content).decode()


# --- usage -------------------------------------------------------------------------------------


def test_usage_gives_a_page_of_rows_the_total_and_the_series(acme, finance):
    response = finance.get(USAGE, {"month": "2027-03", "group_by": "route", "page_size": 2})
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["count"] == 5
    assert [row["group"] for row in body["results"]] == ["route-5", "route-4"]
    assert body["results"][0]["cost"] == "0.5000000001"
    assert body["next"].endswith("page=2&page_size=2")
    assert body["total"] == {
        "requests": 5,
        "prompt_tokens": 500,
        "completion_tokens": 250,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
        "total_tokens": 750,
        "cost": "1.5000000005",
    }
    assert len(body["series"]) == 31
    assert body["series"][0] == {"day": "2027-03-01", "total_tokens": 150, "cost": "0.1000000001"}
    assert body["query"] == {"month": "2027-03", "group_by": "route"}
    assert body["as_of"] is not None
    last = finance.get(USAGE, {"month": "2027-03", "group_by": "route", "page_size": 2, "page": 3})
    assert [row["group"] for row in last.json()["results"]] == ["route-1"]


def test_usage_by_tag_value_totals_equal_the_rows(acme, finance):
    body = finance.get(
        USAGE, {"start": "2027-03-01", "end": "2027-03-31", "group_by": "tag", "tag_key": "team"}
    ).json()
    costs = {row["group"]: Decimal(row["cost"]) for row in body["results"]}
    assert costs == {"search": Decimal("0.9000000003"), "ads": Decimal("0.6000000002")}
    assert sum(costs.values()) == Decimal(body["total"]["cost"])


@pytest.mark.parametrize(
    ("parameters", "param"),
    [
        ({}, "month"),
        ({"month": "03/2027"}, "month"),
        ({"month": "2027-03", "start": "2027-03-01"}, "month"),
        ({"start": "2027-01-01", "end": "2028-06-01"}, "end"),
        ({"month": "2027-03", "group_by": "colour"}, "group_by"),
        ({"month": "2027-03", "tenant": "initech"}, "tenant"),
    ],
)
def test_bad_parameters_are_a_400_in_the_envelope(acme, finance, parameters, param):
    for url in (USAGE, "/api/v1/billing/usage.csv", "/api/v1/billing/lines.csv"):
        if url.endswith("lines.csv") and param == "group_by":
            continue  # the lines have no grouping
        error = assert_envelope(finance.get(url, parameters), 400, "invalid_request_error")
        assert error["param"] == param
        assert error["message"].startswith(f"{param}: ")


def test_an_invalid_page_is_a_404_in_the_envelope(acme, finance):
    response = finance.get(USAGE, {"month": "2027-03", "page": 9})
    assert_envelope(response, 404, "invalid_request_error")


# --- downloads ---------------------------------------------------------------------------------


def test_usage_csv_is_streamed_as_an_attachment(acme, finance):
    response = finance.get(
        "/api/v1/billing/usage.csv",
        {"month": "2027-03", "tenant": "acme", "group_by": "day"},
        headers={"Accept": "text/csv"},
    )
    rows = list(csv.reader(io.StringIO(streamed(response))))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        'attachment; filename="usage-2027-03-acme-by-day.csv"'
    )
    assert [row[0] for row in rows] == ["day", *(f"2027-03-0{d}" for d in range(1, 6)), "(total)"]
    assert rows[-1][-1] == "1.5000000005"


def test_ledger_lines_csv_is_streamed_and_shows_no_key_secret(acme, finance):
    response = finance.get("/api/v1/billing/lines.csv", {"month": "2027-03"})
    text = streamed(response)
    rows = list(csv.DictReader(io.StringIO(text)))
    assert [row["key_prefix"] for row in rows] == [acme.api_key.prefix]
    assert acme.plaintext not in text
    assert response["Content-Disposition"] == (
        'attachment; filename="ledger-lines-2027-03-all.csv"'
    )


def test_no_response_carries_a_key_secret(acme, finance):
    for url in (USAGE, "/api/v1/billing/usage.csv", "/api/v1/billing/lines.csv"):
        for group_by in ("key", "model"):
            response = finance.get(url, {"month": "2027-03", "group_by": group_by})
            body = streamed(response) if response.streaming else response.content.decode()
            assert acme.plaintext not in body
            assert acme.plaintext[len(acme.api_key.prefix) :] not in body


# --- permissions -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "needs"),
    [
        (USAGE, "billing.view_dailyusage"),
        ("/api/v1/billing/usage.csv", "billing.view_dailyusage"),
        ("/api/v1/billing/lines.csv", "billing.view_usageline"),
        ("/api/v1/billing/statements/acme/2027-03/", "billing.view_statement"),
    ],
)
def test_each_endpoint_needs_its_view_permission(acme, url, needs):
    everything_else = [
        name
        for name in (
            "billing.view_dailyusage",
            "billing.view_usageline",
            "billing.view_statement",
            "billing.view_reportexport",
        )
        if name != needs
    ]
    without = token_client(make_staff("ops", *everything_else))
    response = without.get(url, {"month": "2027-03"})
    assert_envelope(response, 403, "permission_error", "permission_denied")


def test_a_user_who_is_no_longer_staff_is_refused_even_with_the_permission(acme):
    user = make_staff("former", "billing.view_dailyusage")
    user.is_staff = False
    user.save()
    assert_envelope(session(user).get(USAGE, {"month": "2027-03"}), 403, "permission_error")


def test_an_anonymous_caller_gets_401(acme, client):
    assert_envelope(client.get(USAGE, {"month": "2027-03"}), 401, "invalid_request_error")


# --- statements --------------------------------------------------------------------------------


@pytest.fixture
def statement_get(monkeypatch):
    """A stand-in for billing.statements.statement_get, which the statements work builds:
    these tests are about the endpoint, not the arithmetic."""
    calls: list[dict] = []

    def fake(*, tenant_slug: str, month: str) -> StatementView:
        calls.append({"tenant_slug": tenant_slug, "month": month})
        if month == "2031-01":
            raise ValueError("The month 2031-01 has not started yet.")
        return StatementView(
            number="ST-2027-000001",
            tenant_slug=tenant_slug,
            tenant_name="Acme",
            month=month,
            period_start=datetime(2027, 2, 28, 23, tzinfo=UTC),
            period_end=datetime(2027, 3, 31, 22, tzinfo=UTC),
            time_zone="Europe/Rome",
            currency="EUR",
            exchange_rate=Decimal("0.92000000"),
            markup_percent=Decimal("15.00"),
            lines=[
                StatementLineView(
                    "", "openai", "gpt-4o", "input", 1_000_000, Decimal("2.500000"), Decimal("2.5")
                )
            ],
            subtotal_usd=Decimal("2.5000000000"),
            adjustments_usd=Decimal("0E-10"),
            markup_usd=Decimal("0.3750000000"),
            total_usd=Decimal("2.8750000000"),
            total=Decimal("2.65"),
            closed_at=datetime(2027, 4, 1, 9, tzinfo=UTC),
        )

    monkeypatch.setattr(statements, "statement_get", fake, raising=False)
    return calls


def test_a_statement_is_json_with_money_as_strings(acme, statement_get):
    client = token_client(make_staff("fiona", "billing.view_statement"))
    response = client.get("/api/v1/billing/statements/acme/2027-03/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert statement_get == [{"tenant_slug": "acme", "month": "2027-03"}]
    assert body["number"] == "ST-2027-000001"
    assert (body["total"], body["total_usd"], body["exchange_rate"]) == (
        "2.65",
        "2.8750000000",
        "0.92000000",
    )
    assert body["adjustments_usd"] == "0.0000000000"
    assert body["lines"] == [
        {
            "adjustment_of": "",
            "provider": "openai",
            "model": "gpt-4o",
            "token_kind": "input",
            "quantity": 1_000_000,
            "unit_price": "2.500000",
            "amount_usd": "2.5",
        }
    ]
    assert body["period_start"] == "2027-02-28T23:00:00Z"


def test_a_statement_of_an_unknown_tenant_or_a_bad_month(acme, statement_get):
    client = token_client(make_staff("fiona", "billing.view_statement"))
    assert_envelope(
        client.get("/api/v1/billing/statements/initech/2027-03/"), 404, "invalid_request_error"
    )
    error = assert_envelope(
        client.get("/api/v1/billing/statements/acme/2027-3/"), 400, "invalid_request_error"
    )
    assert error["param"] == "month"
    error = assert_envelope(
        client.get("/api/v1/billing/statements/acme/2031-01/"), 400, "invalid_request_error"
    )
    assert error["message"] == "month: The month 2031-01 has not started yet."
    assert len(statement_get) == 1  # only the well-formed request reached it
