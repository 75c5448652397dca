"""The Finance and Ops groups after billing 0008: Finance works on usage, reports,
statements and prices and never sees an API key, a prompt or a response; Ops reads the
price book and the ledger and edits no price; a superuser sees everything."""

from __future__ import annotations

import importlib
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.urls import reverse
from django.utils import timezone

from audit.models import AuditEvent
from billing.models import PriceVersion
from tests import factories
from tests.billing.finance_data import MONTH, make_finance_data
from tests.gateway_project.management_api import make_staff, session

pytestmark = pytest.mark.django_db

MIGRATION = importlib.import_module("billing.migrations.0008_finance_pages_and_permissions")
BILLING_MODELS = (
    "usageline", "dailyusage", "statement", "statementline", "reportexport", "priceversion",
)  # fmt: skip


def codenames(group: str) -> set[str]:
    return {
        f"{p.content_type.app_label}.{p.codename}"
        for p in Group.objects.get(name=group).permissions.select_related("content_type")
        if p.content_type.app_label == "audit" or p.codename.endswith(BILLING_MODELS)
    }


@pytest.fixture
def data():
    return make_finance_data()


@pytest.fixture
def finance():
    return session(make_staff("fred", groups=("Finance",)))


@pytest.fixture
def ops():
    return session(make_staff("olga", groups=("Ops",)))


def an_audit_event(tenant) -> AuditEvent:
    return AuditEvent.objects.create(
        request_id="req_secret", created_at=timezone.now(), tenant=tenant, model="gpt-4o",
        outcome="success", status_code=200, prompt=[{"role": "user", "content": "the prompt"}],
        response="the answer",
    )  # fmt: skip


def test_finance_reads_usage_closes_months_and_adds_report_files_and_prices():
    assert codenames("Finance") == {
        "billing.view_usageline",
        "billing.view_dailyusage",
        "billing.view_statement",
        "billing.add_statement",  # closes months: issues statements (billing/close_views.py)
        "billing.view_statementline",
        "billing.view_reportexport",
        "billing.add_reportexport",
        "billing.view_priceversion",
        "billing.add_priceversion",
    }


def test_ops_reads_the_price_book_and_the_ledger_and_keeps_the_audit_log():
    assert codenames("Ops") == {
        "billing.view_priceversion",
        "billing.view_usageline",
        "audit.view_auditevent",
        "audit.add_redactionrule",
        "audit.change_redactionrule",
        "audit.delete_redactionrule",
        "audit.view_redactionrule",
    }


def test_the_migration_is_idempotent_and_reversible():
    state = MigrationExecutor(connection).loader.project_state(
        ("billing", "0008_finance_pages_and_permissions")
    )
    before = codenames("Finance"), codenames("Ops")

    MIGRATION.grant(state.apps, None)
    assert (codenames("Finance"), codenames("Ops")) == before

    MIGRATION.revoke(state.apps, None)
    assert codenames("Finance") == {"audit.view_auditevent"}
    assert codenames("Ops") == before[1] - {"billing.view_priceversion", "billing.view_usageline"}

    MIGRATION.grant(state.apps, None)
    assert (codenames("Finance"), codenames("Ops")) == before


def test_finance_opens_the_report_exports_and_opens_statements(finance, data):
    page = finance.get(reverse("admin:billing_usagereport_changelist"), {"month": MONTH})
    csv = finance.get(
        reverse("admin:billing_usagereport_download", args=["usage", "csv"]), {"month": MONTH}
    )
    lines = finance.get(
        reverse("admin:billing_usagereport_download", args=["lines", "xlsx"]), {"month": MONTH}
    )
    statement = finance.get(reverse("admin:billing_statement_print", args=["acme", "2026-10"]))
    pdf = finance.get(reverse("admin:billing_statement_pdf", args=["acme", "2026-10"]))

    assert [r.status_code for r in (page, csv, lines, statement, pdf)] == [200] * 5
    assert page.context["total"].cost == data.november_report_cost()
    assert data.statement.number in statement.content.decode()
    assert pdf.content.startswith(b"%PDF-")


def test_finance_never_sees_a_prompt_nor_a_response(finance, data):
    event = an_audit_event(data.acme)

    listed = finance.get(reverse("admin:audit_auditevent_changelist"))
    opened = finance.get(reverse("admin:audit_auditevent_change", args=[event.pk]))
    index = finance.get(reverse("admin:index"))

    assert (listed.status_code, opened.status_code) == (403, 403)
    assert reverse("admin:audit_auditevent_changelist") not in index.content.decode()


def test_finance_never_sees_an_api_key(finance, data):
    issued = factories.make_key(data.acme, name="production key")
    key = issued.api_key
    picker = "/admin/autocomplete/?app_label=billing&model_name=budget&field_name=api_key"

    listed = finance.get(reverse("admin:tenants_apikey_changelist"))
    opened = finance.get(reverse("admin:tenants_apikey_change", args=[key.pk]))
    found = finance.get(f"{picker}&term={key.prefix[:4]}")
    tenant = finance.get(reverse("admin:tenants_tenant_change", args=[data.acme.pk]))

    assert (listed.status_code, opened.status_code, found.status_code) == (403, 403, 403)
    # The tenant's page, which Finance may read, leaves its keys inline out.
    assert tenant.status_code == 200
    assert key.prefix not in tenant.content.decode()
    assert "production key" not in tenant.content.decode()
    assert issued.plaintext not in tenant.content.decode()


def test_an_ops_user_cannot_add_a_price_version(ops):
    model = factories.make_model(factories.make_provider(), "gpt")
    versions = PriceVersion.objects.count()
    form = {
        "provider_model": str(model.pk),
        "input_per_million": "9",
        "output_per_million": "9",
        "effective_from_0": "2030-01-01",
        "effective_from_1": "00:00:00",
    }

    listed = ops.get(reverse("admin:billing_priceversion_changelist"))
    add_page = ops.get(reverse("admin:billing_priceversion_add"))
    added = ops.post(reverse("admin:billing_priceversion_add"), form)

    assert listed.status_code == 200
    assert (add_page.status_code, added.status_code) == (403, 403)
    assert PriceVersion.objects.count() == versions


def test_an_ops_user_cannot_change_a_models_price_through_the_provider_admin(ops):
    model = factories.make_model(factories.make_provider(), "gpt")
    change = reverse("admin:providers_providermodel_change", args=[model.pk])
    form = {
        "provider": str(model.provider_id),
        "name": "gpt",
        "input_per_million": "99",
        "output_per_million": "99",
        "context_window": "1000",
    }

    page = ops.get(change)
    saved = ops.post(change, form)

    assert page.status_code == 200
    assert 'name="input_per_million"' not in page.content.decode()  # shown read-only
    assert saved.status_code == 302
    model.refresh_from_db()
    assert (model.context_window, model.input_per_million) == (1000, Decimal("1.00"))
    provider = ops.get(reverse("admin:providers_provider_change", args=[model.provider_id]))
    assert 'name="models-0-input_per_million"' not in provider.content.decode()


def test_finance_adds_a_price_version(finance):
    model = factories.make_model(factories.make_provider(), "gpt")

    added = finance.post(
        reverse("admin:billing_priceversion_add"),
        {
            "provider_model": str(model.pk),
            "input_per_million": "3",
            "output_per_million": "12",
            "effective_from_0": "2030-01-01",
            "effective_from_1": "00:00:00",
        },
    )

    assert added.status_code == 302, added.content
    assert PriceVersion.objects.filter(provider_model=model, input_per_million=3).exists()


def test_ops_has_no_usage_and_billing_page(ops, data):
    index = ops.get(reverse("admin:index"))

    assert "Usage &amp; billing" not in index.content.decode()
    assert ops.get(reverse("admin:billing_usagereport_changelist")).status_code == 403
    assert (
        ops.get(reverse("admin:billing_statement_print", args=["acme", "2026-10"])).status_code
        == 403
    )


def test_a_superuser_sees_everything(admin_client, data):
    event = an_audit_event(data.acme)
    key = factories.make_key(data.acme).api_key
    model = factories.make_model(factories.make_provider(), "gpt")
    urls = [
        reverse("admin:billing_usagereport_changelist") + f"?month={MONTH}",
        reverse("admin:billing_usagereport_download", args=["lines", "csv"]) + f"?month={MONTH}",
        reverse("admin:billing_statement_print", args=["acme", "2026-10"]),
        reverse("admin:billing_statement_pdf", args=["acme", "2026-10"]),
        reverse("admin:audit_auditevent_change", args=[event.pk]),
        reverse("admin:tenants_apikey_change", args=[key.pk]),
        reverse("admin:billing_priceversion_add"),
    ]

    assert [admin_client.get(url).status_code for url in urls] == [200] * len(urls)
    page = admin_client.get(reverse("admin:providers_providermodel_change", args=[model.pk]))
    assert 'name="input_per_million"' in page.content.decode()
    tenant = admin_client.get(reverse("admin:tenants_tenant_change", args=[data.acme.pk]))
    assert key.prefix in tenant.content.decode()
