"""The commercial terms' admin: writes through billing/terms_services.py, exchange rates read-only
once fixed, and the Finance and Ops groups' permissions on them (billing migration 0005).

Saving an unchanged form, a changed one and deleting, for terms and overrides, are checked
with every other admin in tests/test_admin_write_path.py.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

import billing.terms_admin
from billing.models import ExchangeRate, PriceOverride, TenantTerms
from billing.terms_services import exchange_rate_fix, price_override_set, tenant_terms_set
from tests import factories
from tests.gateway_project.management_api import make_staff, session

pytestmark = pytest.mark.django_db


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch):
    """Record the keyword arguments of a service as billing.terms_admin calls it."""

    def install(name: str) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        real = getattr(billing.terms_admin, name)

        def recorded(**kwargs: Any) -> Any:
            seen.append(kwargs)
            return real(**kwargs)

        monkeypatch.setattr(billing.terms_admin, name, recorded)
        return seen

    return install


@pytest.mark.parametrize(
    "url",
    [
        "admin:billing_tenantterms_changelist",
        "admin:billing_tenantterms_add",
        "admin:billing_priceoverride_changelist",
        "admin:billing_priceoverride_add",
        "admin:billing_exchangerate_changelist",
        "admin:billing_exchangerate_add",
    ],
)
def test_the_terms_pages_render(admin_client, acme, url):
    tenant_terms_set(tenant=acme, markup_percent=Decimal(5), currency="EUR", time_zone="UTC")
    model = factories.make_model(factories.make_provider())
    price_override_set(tenant=acme, provider_model=model, input_per_million=Decimal(1))
    exchange_rate_fix(currency="EUR", month="2026-11", rate=Decimal("0.9"))

    assert admin_client.get(reverse(url)).status_code == 200


def terms_form(tenant, **fields: str) -> dict[str, str]:
    data = {"tenant": str(tenant.pk), "markup_percent": "-10.00", "currency": "eur"}
    return data | {"time_zone": "America/New_York"} | fields


def test_terms_added_in_the_admin_are_set_through_the_service(admin_client, acme, calls):
    seen = calls("tenant_terms_set")

    response = admin_client.post(reverse("admin:billing_tenantterms_add"), terms_form(acme))

    assert response.status_code == 302, response.context and response.context["errors"]
    assert seen == [
        {
            "tenant": acme,
            "markup_percent": Decimal("-10.00"),
            "currency": "EUR",
            "time_zone": "America/New_York",
        }
    ]
    assert TenantTerms.objects.get(tenant=acme).currency == "EUR"


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("time_zone", "Europe/Atlantis", "is not an IANA time zone name"),
        ("currency", "ABC", "is not a statement currency"),
        ("markup_percent", "-100", "A markup or discount is a percentage above -100"),
    ],
)
def test_bad_terms_are_refused_on_the_form_with_the_reason(admin_client, acme, field, value, error):
    data = terms_form(acme, **{field: value})

    response = admin_client.post(reverse("admin:billing_tenantterms_add"), data)

    assert response.status_code == 200
    assert error in str(response.context["adminform"].form.errors[field])
    assert not TenantTerms.objects.exists()


def test_the_tenant_of_saved_terms_is_read_only(admin_client, acme, globex):
    terms = tenant_terms_set(tenant=acme, markup_percent=0, currency="USD", time_zone="UTC")
    url = reverse("admin:billing_tenantterms_change", args=[terms.instance.pk])

    response = admin_client.post(url, terms_form(globex, currency="GBP"))

    assert response.status_code == 302
    assert list(TenantTerms.objects.values_list("tenant__slug", "currency")) == [("acme", "GBP")]


def test_an_override_added_in_the_admin_is_set_through_the_service(admin_client, acme, calls):
    model = factories.make_model(factories.make_provider())
    seen = calls("price_override_set")
    data = {
        "tenant": str(acme.pk),
        "provider_model": str(model.pk),
        "input_per_million": "0.75",
        "output_per_million": "",
        "cached_input_per_million": "0.075",
    }

    response = admin_client.post(reverse("admin:billing_priceoverride_add"), data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert [(call["tenant"], call["provider_model"]) for call in seen] == [(acme, model)]
    override = PriceOverride.objects.get()
    assert (override.input_per_million, override.output_per_million) == (Decimal("0.75"), None)


def test_a_rate_is_fixed_in_the_admin_through_the_service(admin_client, calls):
    seen = calls("exchange_rate_fix")
    data = {"currency": "JPY", "month": "2026-11", "rate": "151.23456789"}

    response = admin_client.post(reverse("admin:billing_exchangerate_add"), data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert seen == [{"currency": "JPY", "month": "2026-11", "rate": Decimal("151.23456789")}]
    assert ExchangeRate.objects.get().rate == Decimal("151.23456789")


def test_a_fixed_rate_is_read_only_and_cannot_be_deleted_nor_fixed_again(admin_client):
    rate = exchange_rate_fix(currency="EUR", month="2026-11", rate=Decimal("0.9")).instance
    change = reverse("admin:billing_exchangerate_change", args=[rate.pk])

    page = admin_client.get(change)
    posted = admin_client.post(change, {"currency": "EUR", "month": "2026-11", "rate": "2"})
    deleted = admin_client.post(
        reverse("admin:billing_exchangerate_delete", args=[rate.pk]), {"post": "yes"}
    )
    again = admin_client.post(
        reverse("admin:billing_exchangerate_add"),
        {"currency": "EUR", "month": "2026-11", "rate": "0.95"},
    )

    assert page.status_code == 200
    assert not page.context["adminform"].form.fields  # every field shown read-only
    assert (posted.status_code, deleted.status_code) == (403, 403)
    assert again.status_code == 200  # the form again, with the reason
    assert "already exists" in str(again.context["adminform"].form.errors)
    assert list(ExchangeRate.objects.values_list("rate", flat=True)) == [Decimal("0.9")]


def codenames(group: str) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name=group).permissions.select_related("content_type")
        if p.codename.endswith(("tenantterms", "priceoverride", "exchangerate"))
    }


def test_finance_manages_the_terms_and_ops_only_reads_them():
    assert codenames("Finance") == {
        "billing.add_tenantterms",
        "billing.change_tenantterms",
        "billing.delete_tenantterms",
        "billing.view_tenantterms",
        "billing.add_priceoverride",
        "billing.change_priceoverride",
        "billing.delete_priceoverride",
        "billing.view_priceoverride",
        "billing.add_exchangerate",  # a rate is fixed once: never changed nor deleted
        "billing.view_exchangerate",
    }
    assert codenames("Ops") == {
        "billing.view_tenantterms",
        "billing.view_priceoverride",
        "billing.view_exchangerate",
    }


def test_a_finance_user_sets_terms_overrides_and_rates_in_the_admin(acme):
    finance = session(make_staff("fred", groups=("Finance",)))
    model = factories.make_model(factories.make_provider(), "gpt")
    picker = "/admin/autocomplete/?app_label=billing&model_name=priceoverride"

    terms = finance.post(reverse("admin:billing_tenantterms_add"), terms_form(acme))
    found = finance.get(f"{picker}&field_name=provider_model&term=gp")
    override = finance.post(
        reverse("admin:billing_priceoverride_add"),
        {"tenant": str(acme.pk), "provider_model": str(model.pk), "input_per_million": "1"},
    )
    rate = finance.post(
        reverse("admin:billing_exchangerate_add"),
        {"currency": "EUR", "month": "2026-11", "rate": "0.9"},
    )

    assert (terms.status_code, override.status_code, rate.status_code) == (302, 302, 302)
    assert [result["id"] for result in found.json()["results"]] == [str(model.pk)]
    assert finance.get(reverse("admin:tenants_apikey_changelist")).status_code == 403


def test_an_ops_user_reads_the_terms_but_cannot_change_them(acme):
    terms = tenant_terms_set(tenant=acme, markup_percent=5, currency="EUR", time_zone="UTC")
    ops = session(make_staff("olga", groups=("Ops",)))
    change = reverse("admin:billing_tenantterms_change", args=[terms.instance.pk])

    listed = ops.get(reverse("admin:billing_tenantterms_changelist"))
    posted = ops.post(change, terms_form(acme, markup_percent="50"))
    added = ops.post(
        reverse("admin:billing_exchangerate_add"),
        {"currency": "EUR", "month": "2026-11", "rate": "0.9"},
    )

    assert listed.status_code == 200
    assert (posted.status_code, added.status_code) == (403, 403)
    assert TenantTerms.objects.get().markup_percent == Decimal(5)
    assert not ExchangeRate.objects.exists()
