"""Budget and rate-limit admin: the models' scope validation reaches the form, budgets
show their current spend, and budget alerts are a read-only record."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from billing.counters import budget_counter_key, cost_to_units
from billing.models import Budget, BudgetAlert, RateLimit, UsageLine
from billing.periods import period_for
from gateway_project.lib.redis_client import async_client
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url",
    [
        "admin:billing_budget_changelist",
        "admin:billing_budget_add",
        "admin:billing_ratelimit_changelist",
        "admin:billing_ratelimit_add",
        "admin:billing_budgetalert_changelist",
    ],
)
def test_limit_pages_render(admin_client, acme, url):
    Budget.objects.create(scope="tenant", tenant=acme, max_tokens=1000)
    RateLimit.objects.create(scope="global", rpm=60)
    budget = Budget.objects.create(scope="tenant", tenant=acme, max_cost_usd=Decimal("5"))
    BudgetAlert.objects.create(budget=budget, period_key="m202603", threshold=80, spent_tokens=9)
    assert admin_client.get(reverse(url)).status_code == 200


def budget_form(**fields: str) -> dict[str, str]:
    data = {
        "scope": "tenant",
        "tenant": "",
        "api_key": "",
        "route": "",
        "period": "monthly",
        "max_tokens": "",
        "max_cost_usd": "",
        "hard": "on",
        "enabled": "on",
        "alert_thresholds": "50, 80, 100",
    }
    return data | fields


def test_it_creates_a_tenant_budget(admin_client, acme, saved):
    response = admin_client.post(
        reverse("admin:billing_budget_add"), budget_form(tenant=str(acme.pk), max_cost_usd="25")
    )
    assert response.status_code == 302
    assert Budget.objects.get().tenant == acme
    assert "Budget" in saved  # a model save: the gateway rebuilds its snapshot


def test_a_tenant_budget_without_a_tenant_is_refused_with_the_reason(admin_client):
    response = admin_client.post(reverse("admin:billing_budget_add"), budget_form(max_tokens="5"))
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["tenant"] == ["A tenant limit needs a tenant."]
    assert not Budget.objects.exists()


def test_a_budget_without_any_limit_is_refused(admin_client, acme):
    response = admin_client.post(
        reverse("admin:billing_budget_add"), budget_form(tenant=str(acme.pk))
    )
    assert "Set a token limit, a cost limit, or both." in response.content.decode()


def test_a_key_rate_limit_must_not_name_a_tenant(admin_client, acme):
    api_key = factories.make_key(acme).api_key
    response = admin_client.post(
        reverse("admin:billing_ratelimit_add"),
        {
            "scope": "key",
            "tenant": str(acme.pk),
            "api_key": str(api_key.pk),
            "route": "",
            "model_name": "",
            "rpm": "60",
            "tpm": "",
            "enabled": "on",
        },
    )
    assert response.context["adminform"].form.errors["tenant"] == [
        "Leave tenant empty for a key limit."
    ]


def rate_limit_form(**fields: str) -> dict[str, str]:
    data = {"scope": "tenant", "tenant": "", "api_key": "", "route": "", "model_name": ""}
    return data | {"rpm": "60", "tpm": "", "enabled": "on"} | fields


def test_a_tenant_rate_limit_may_be_for_one_model(admin_client, acme, saved):
    response = admin_client.post(
        reverse("admin:billing_ratelimit_add"),
        rate_limit_form(tenant=str(acme.pk), model_name="support_copilot"),
    )
    assert response.status_code == 302
    assert RateLimit.objects.get().model_name == "support_copilot"
    assert "RateLimit" in saved


def test_only_a_tenant_rate_limit_may_name_a_model(admin_client):
    response = admin_client.post(
        reverse("admin:billing_ratelimit_add"), rate_limit_form(scope="global", model_name="chat")
    )
    assert response.context["adminform"].form.errors["model_name"] == [
        "Only a tenant rate limit can name a model; leave it empty."
    ]
    assert not RateLimit.objects.exists()


def test_keys_cannot_be_issued_from_the_limit_form_popup(admin_client):
    response = admin_client.get(reverse("admin:billing_budget_add"))
    content = response.content.decode()
    assert 'id="add_id_tenant"' in content
    assert 'id="add_id_api_key"' not in content


# --- current spend ---


def spend(tenant, *, tokens: int, cost: str) -> None:
    UsageLine.objects.create(
        request_id=f"r{UsageLine.objects.count()}",
        created_at=timezone.now(),
        tenant_id=tenant.id,
        outcome="success",
        total_tokens=tokens,
        cost_usd=Decimal(cost),
    )


def test_the_budget_list_shows_spend_remaining_and_period_end(admin_client, acme):
    Budget.objects.create(
        scope="tenant", tenant=acme, period="daily", max_tokens=10_000, max_cost_usd=Decimal("4")
    )
    spend(acme, tokens=2_500, cost="1.5")

    response = admin_client.get(reverse("admin:billing_budget_changelist"))

    content = response.content.decode()
    end = period_for("daily", timezone.now()).end
    assert "2,500 tokens · $1.50" in content
    assert "7,500 tokens · $2.50" in content
    assert "37.5%" in content  # cost is the tighter of the two
    assert f"{end:%Y-%m-%d %H:%M} UTC" in content
    assert "50%, 80%, 100%" in content


def test_the_budget_list_costs_one_ledger_query_per_budget(admin_client, acme, globex):
    url = reverse("admin:billing_budget_changelist")
    Budget.objects.create(scope="tenant", tenant=acme, max_tokens=10)
    with CaptureQueriesContext(connection) as one:
        admin_client.get(url)
    Budget.objects.create(scope="tenant", tenant=globex, max_tokens=10)
    Budget.objects.create(scope="tenant", tenant=acme, period="daily", max_tokens=10)
    with CaptureQueriesContext(connection) as three:
        admin_client.get(url)

    ledger = [q for q in three.captured_queries if "billing_usageline" in q["sql"]]
    assert len(ledger) == 3
    assert len(three) - len(one) == 2  # nothing else grows with the rows


def test_the_budget_page_shows_the_current_period_read_only(admin_client, acme):
    budget = Budget.objects.create(scope="tenant", tenant=acme, period="total", max_tokens=100)
    spend(acme, tokens=40, cost="0.01")

    response = admin_client.get(reverse("admin:billing_budget_change", args=[budget.pk]))

    content = response.content.decode()
    assert "Current period" in content
    assert "all time (total budget)" in content
    assert "40 tokens · $0.01" in content
    assert "60 tokens" in content
    assert "40.0%" in content
    form = response.context["adminform"].form
    assert "spent" not in form.fields  # read-only, not editable
    assert form["alert_thresholds"].value() == "50, 80, 100"


def test_the_add_page_has_no_spend_yet(admin_client):
    response = admin_client.get(reverse("admin:billing_budget_add"))
    assert "Current period" not in response.content.decode()


def test_alert_thresholds_are_edited_as_a_list_and_tidied(admin_client, acme):
    response = admin_client.post(
        reverse("admin:billing_budget_add"),
        budget_form(tenant=str(acme.pk), max_tokens="5", alert_thresholds="90, 25%, 90,"),
    )
    assert response.status_code == 302
    assert Budget.objects.get().alert_thresholds == [25, 90]


def test_no_alert_thresholds_means_no_alerts(admin_client, acme):
    admin_client.post(
        reverse("admin:billing_budget_add"),
        budget_form(tenant=str(acme.pk), max_tokens="5", alert_thresholds=""),
    )
    assert Budget.objects.get().alert_thresholds == []


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("50, 0", "not 0"),
        ("101", "not 101"),
        ("50, lots", "'lots' is not a whole number."),
    ],
)
def test_alert_thresholds_must_be_percentages(admin_client, acme, typed, message):
    response = admin_client.post(
        reverse("admin:billing_budget_add"),
        budget_form(tenant=str(acme.pk), max_tokens="5", alert_thresholds=typed),
    )
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors["alert_thresholds"]
    assert message in errors[0]
    assert not Budget.objects.exists()


# --- budget alerts ---


@pytest.fixture
def alert(acme) -> BudgetAlert:
    budget = Budget.objects.create(scope="tenant", tenant=acme, max_cost_usd=Decimal("5"))
    return BudgetAlert.objects.create(
        budget=budget,
        period_key="m202603",
        threshold=80,
        spent_tokens=12_000,
        spent_cost_usd=Decimal("4.25"),
        emailed_at=timezone.now(),
    )


def test_budget_alerts_are_listed_with_their_spend(admin_client, alert):
    response = admin_client.get(reverse("admin:billing_budgetalert_changelist"))

    content = response.content.decode()
    assert "monthly budget for tenant acme" in content
    assert "m202603" in content
    assert "80%" in content
    assert "12,000 tokens · $4.25" in content


def test_budget_alerts_cannot_be_added_changed_or_deleted(admin_client, alert):
    assert admin_client.get(reverse("admin:billing_budgetalert_add")).status_code == 403
    change_url = reverse("admin:billing_budgetalert_change", args=[alert.pk])
    page = admin_client.get(change_url)
    assert page.status_code == 200  # viewable
    assert 'name="_save"' not in page.content.decode()
    assert admin_client.post(change_url, {"threshold": "10"}).status_code == 403
    delete_url = reverse("admin:billing_budgetalert_delete", args=[alert.pk])
    assert admin_client.post(delete_url, {"post": "yes"}).status_code == 403
    alert.refresh_from_db()
    assert alert.threshold == 80


async def _set_counter(key: str, fields: dict[str, int]) -> None:
    await async_client().hset(key, mapping=fields)


async def _drop_counter(key: str) -> None:
    await async_client().delete(key)


def test_the_budget_list_shows_the_requests_that_spent_past_their_reservation(
    admin_client, acme, globex
):
    overrun = Budget.objects.create(scope="tenant", tenant=acme, max_cost_usd=Decimal("1"))
    clean = Budget.objects.create(scope="tenant", tenant=globex, max_cost_usd=Decimal("1"))
    key = budget_counter_key(overrun.id, period_for(overrun.period, timezone.now()))
    # What the settlement script counts (billing/lua/settle.lua): 3 requests, 42 tokens
    # and $0.0042 past what they reserved.
    fields = {"st": 0, "sc": 0, "rt": 0, "rc": 0, "ov": 3, "ovt": 42}
    async_to_sync(_set_counter)(key, {**fields, "ovc": cost_to_units(Decimal("0.0042"))})
    try:
        listing = admin_client.get(reverse("admin:billing_budget_changelist")).content.decode()
        page = admin_client.get(reverse("admin:billing_budget_change", args=[overrun.pk]))
        other = admin_client.get(reverse("admin:billing_budget_change", args=[clean.pk]))
    finally:
        async_to_sync(_drop_counter)(key)

    shown = "3 requests: 42 tokens · $0.0042 more than reserved"
    assert shown in listing
    assert shown in page.content.decode()
    assert shown not in other.content.decode()
    assert "past reservation" in other.content.decode().lower()
