"""Every admin save and delete goes through its app's services: one write path.

Proved by what the services do and ModelAdmin would not (an unchanged form writes nothing,
so no gateway rebuilds its snapshot for it), and, for deletes, by a spy on the service the
admin must call.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from types import ModuleType
from typing import Any

import pytest
from django.contrib.admin.widgets import RelatedFieldWidgetWrapper
from django.db.models import Model
from django.forms import BaseForm
from django.urls import reverse
from django.utils import timezone

import audit.admin.redaction_rules
import billing.admin
import billing.terms_admin
import providers.admin
import routing.admin
import tenants.admin.api_key
import tenants.admin.tenant
from audit.models import RedactionRule
from billing.models import Budget, RateLimit
from billing.terms_services import price_override_set, tenant_terms_set
from providers.models import Provider, ProviderModel
from routing.models import Route, RouteTarget
from tenants.models import ApiKey, Tenant
from tenants.services import management_token_issue
from tests import factories

pytestmark = pytest.mark.django_db

Spy = Callable[[ModuleType, str], list[dict[str, Any]]]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> Spy:
    """Wrap `module.name` (a service as a module imported it) and record each call's
    keyword arguments, rows by their id (a deleted row forgets it)."""

    def install(module: ModuleType, name: str) -> list[dict[str, Any]]:
        calls: list[dict[str, Any]] = []
        real = getattr(module, name)

        def recorded(**kwargs: Any) -> Any:
            calls.append({k: v.pk if isinstance(v, Model) else v for k, v in kwargs.items()})
            return real(**kwargs)

        monkeypatch.setattr(module, name, recorded)
        return calls

    return install


def _fields(form: BaseForm) -> dict[str, Any]:
    """A form's fields as a browser posts them untouched."""
    data: dict[str, Any] = {}
    for bound in form:
        widget = bound.field.widget
        if isinstance(widget, RelatedFieldWidgetWrapper):
            widget = widget.widget
        context = widget.get_context(bound.html_name, bound.value(), {})["widget"]
        for part in context.get("subwidgets") or [context]:
            value = part["value"]
            if part.get("type") == "checkbox":
                if part["attrs"].get("checked"):
                    data[part["name"]] = "on"
            elif isinstance(value, list):  # a select: its chosen value
                data[part["name"]] = value[0] if value else ""
            else:
                data[part["name"]] = "" if value is None else value
    return data


def untouched(response: Any) -> dict[str, Any]:
    """The change page's form and inline formsets, posted back exactly as rendered."""
    data = _fields(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data |= {bound.html_name: bound.value() for bound in formset.management_form}
        for form in formset.forms:
            data |= _fields(form)
    return data | {"_save": "Save"}


def config_saves(saved: list[str]) -> list[str]:
    """The models saved, without the admin's own history entry."""
    return [name for name in saved if name != "LogEntry"]


def _provider() -> Provider:
    provider = factories.make_provider("vendor", kind="openai", base_url="https://x.test")
    factories.make_model(provider, "big")
    return provider


def _route() -> Route:
    model = factories.make_model(factories.make_provider())
    return factories.make_route("chat", model, factories.make_model(model.provider, "echo2"))


WRITABLE: dict[str, Callable[[Tenant], Model]] = {
    "providers_provider": lambda acme: _provider(),
    "providers_providermodel": lambda acme: factories.make_model(factories.make_provider()),
    "routing_route": lambda acme: _route(),
    "tenants_tenant": lambda acme: acme,
    "tenants_apikey": lambda acme: factories.make_key(acme, max_n=2).api_key,
    "billing_budget": lambda acme: Budget.objects.create(
        scope="tenant", tenant=acme, max_cost_usd=Decimal("5")
    ),
    "billing_ratelimit": lambda acme: RateLimit.objects.create(scope="tenant", tenant=acme, rpm=9),
    "audit_redactionrule": lambda acme: RedactionRule.objects.create(
        name="ids", detector="regex", pattern=r"\bID-\d+\b"
    ),
    "billing_tenantterms": lambda acme: (
        tenant_terms_set(
            tenant=acme, markup_percent=Decimal("5"), currency="EUR", time_zone="Europe/Paris"
        ).instance
    ),
    "billing_priceoverride": lambda acme: (
        price_override_set(
            tenant=acme,
            provider_model=factories.make_model(factories.make_provider()),
            input_per_million=Decimal("0.5"),
        ).instance
    ),
}


@pytest.mark.parametrize("model", WRITABLE)
def test_saving_an_unchanged_form_writes_nothing(admin_client, acme, saved, model):
    obj = WRITABLE[model](acme)
    url = reverse(f"admin:{model}_change", args=[obj.pk])
    saved.clear()

    response = admin_client.post(url, untouched(admin_client.get(url)))

    assert response.status_code == 302, response.context and response.context["errors"]
    # ModelAdmin would save the row (and its inline rows) again, rebuilding every gateway's
    # snapshot for nothing; the update services write only what differs.
    assert config_saves(saved) == []


CHANGES = {
    "providers_provider": {"api_version": "2024-06-01"},
    "providers_providermodel": {"context_window": "1000"},
    "routing_route": {"description": "changed"},
    "tenants_tenant": {"name": "Renamed"},
    "tenants_apikey": {"name": "Renamed"},
    "billing_budget": {"max_cost_usd": "7.000000"},
    "billing_ratelimit": {"rpm": "11"},
    "audit_redactionrule": {"replacement": "[ID]"},
    "billing_tenantterms": {"time_zone": "Asia/Tokyo"},
    "billing_priceoverride": {"output_per_million": "1.250000"},
}


@pytest.mark.parametrize("model", WRITABLE)
def test_a_changed_form_is_saved_through_the_model(admin_client, acme, saved, model):
    obj = WRITABLE[model](acme)
    url = reverse(f"admin:{model}_change", args=[obj.pk])
    data = untouched(admin_client.get(url)) | CHANGES[model]
    saved.clear()

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    # Once, through the model: the snapshot hears of it.
    assert config_saves(saved) == [type(obj).__name__]
    obj.refresh_from_db()
    [(field, value)] = CHANGES[model].items()
    assert str(getattr(obj, field)) == value


DELETES = {
    "providers_provider": (providers.admin, "provider_delete", lambda acme: _provider()),
    "providers_providermodel": (
        providers.admin,
        "provider_model_delete",
        lambda acme: factories.make_model(factories.make_provider()),
    ),
    "routing_route": (routing.admin, "route_delete", lambda acme: _route()),
    "tenants_tenant": (tenants.admin.tenant, "tenant_delete", lambda acme: acme),
    "tenants_apikey": (
        tenants.admin.api_key,
        "api_key_delete",
        lambda acme: factories.make_key(acme).api_key,
    ),
    "billing_budget": (billing.admin, "budget_delete", WRITABLE["billing_budget"]),
    "billing_ratelimit": (billing.admin, "rate_limit_delete", WRITABLE["billing_ratelimit"]),
    "audit_redactionrule": (
        audit.admin.redaction_rules,
        "redaction_rule_delete",
        WRITABLE["audit_redactionrule"],
    ),
    "billing_tenantterms": (
        billing.terms_admin,
        "tenant_terms_delete",
        WRITABLE["billing_tenantterms"],
    ),
    "billing_priceoverride": (
        billing.terms_admin,
        "price_override_delete",
        WRITABLE["billing_priceoverride"],
    ),
}


@pytest.mark.parametrize("model", DELETES)
def test_the_delete_page_deletes_through_the_service(admin_client, acme, spy, model):
    module, service, make = DELETES[model]
    obj = make(acme)
    calls = spy(module, service)

    response = admin_client.post(reverse(f"admin:{model}_delete", args=[obj.pk]), {"post": "yes"})

    assert response.status_code == 302
    assert [list(call.values()) for call in calls] == [[obj.pk]]
    assert not type(obj)._default_manager.filter(pk=obj.pk).exists()


@pytest.mark.parametrize("model", DELETES)
def test_the_bulk_delete_action_deletes_each_row_through_the_service(
    admin_client, acme, globex, spy, model
):
    module, service, make = DELETES[model]
    obj = make(acme)
    calls = spy(module, service)

    response = admin_client.post(
        reverse(f"admin:{model}_changelist"),
        {"action": "delete_selected", "_selected_action": [obj.pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert [list(call.values()) for call in calls] == [[obj.pk]]
    assert not type(obj)._default_manager.filter(pk=obj.pk).exists()


def test_inline_target_rows_are_added_changed_and_deleted_through_the_services(
    admin_client, spy, saved
):
    route = _route()
    first, second = route.targets.order_by("position")
    spare = factories.make_model(first.provider_model.provider, "spare")
    url = reverse("admin:routing_route_change", args=[route.pk])
    data = untouched(admin_client.get(url))
    data["targets-0-weight"] = "5"
    data["targets-1-DELETE"] = "on"
    data |= {
        "targets-TOTAL_FORMS": "3",
        "targets-2-route": str(route.pk),
        "targets-2-position": "2",
        "targets-2-provider_model": str(spare.pk),
        "targets-2-weight": "1",
        "targets-2-enabled": "on",
    }
    created = spy(routing.admin, "route_target_create")
    updated = spy(routing.admin, "route_target_update")
    deleted = spy(routing.admin, "route_target_delete")
    saved.clear()

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert [call["provider_model"] for call in created] == [spare.pk]
    assert [(call["target"], call["weight"]) for call in updated] == [(first.pk, 5)]
    assert [call["target"] for call in deleted] == [second.pk]
    # The edited row and the new one; the route itself is unchanged and not saved.
    assert config_saves(saved) == ["RouteTarget", "RouteTarget"]
    assert [(t.provider_model, t.weight) for t in route.targets.order_by("position")] == [
        (first.provider_model, 5),
        (spare, 1),
    ]


def test_inline_model_rows_of_a_provider_are_saved_through_the_services(admin_client, spy):
    provider = _provider()
    url = reverse("admin:providers_provider_change", args=[provider.pk])
    data = untouched(admin_client.get(url))
    data |= {
        "models-TOTAL_FORMS": "2",
        "models-1-provider": str(provider.pk),
        "models-1-name": "small",
        "models-1-input_per_million": "0.10",
        "models-1-output_per_million": "0.20",
        "models-1-context_window": "",
    }
    created = spy(providers.admin, "provider_model_create")

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert [call["name"] for call in created] == ["small"]
    small = ProviderModel.objects.get(provider=provider, name="small")
    assert small.input_per_million == Decimal("0.10")


def test_a_route_created_in_the_admin_goes_through_route_create(admin_client, spy):
    model = factories.make_model(factories.make_provider())
    calls = spy(routing.admin, "route_create")
    data = {
        "name": "chat", "tenant": "", "strategy": "fallback", "description": "",
        "default_max_tokens": "", "cache_ttl_seconds": "0", "semantic_threshold": "0.950",
        "hedge_after_ms": "", "enabled": "on",
        "targets-TOTAL_FORMS": "1", "targets-INITIAL_FORMS": "0",
        "targets-MIN_NUM_FORMS": "0", "targets-MAX_NUM_FORMS": "1000",
        "targets-0-position": "0", "targets-0-provider_model": str(model.pk),
        "targets-0-weight": "1", "targets-0-enabled": "on",
    }  # fmt: skip

    response = admin_client.post(reverse("admin:routing_route_add"), data)

    assert response.status_code == 302, response.context and response.context["errors"]
    assert [call["name"] for call in calls] == ["chat"]
    route = Route.objects.get(name="chat")
    assert RouteTarget.objects.get(route=route).provider_model == model


def test_a_keys_routes_are_checked_on_change_like_the_service_checks_them(admin_client, acme):
    api_key = factories.make_key(acme).api_key
    url = reverse("admin:tenants_apikey_change", args=[api_key.pk])
    data = untouched(admin_client.get(url)) | {"allowed_routes": "nowhere"}

    response = admin_client.post(url, data)

    assert response.status_code == 200  # the form again, with the error; never a 500
    assert "has no route named nowhere" in str(response.context["adminform"].form.errors)
    api_key.refresh_from_db()
    assert api_key.allowed_routes == []


def test_the_management_token_change_page_saves_nothing(admin_client, admin_user, saved):
    token = management_token_issue(user=admin_user, expires_at=timezone.now() + timedelta(days=1))
    url = reverse("admin:tenants_managementtoken_change", args=[token.token.pk])
    saved.clear()

    response = admin_client.post(url, {"_save": "Save"})

    assert response.status_code == 302
    assert config_saves(saved) == []


def test_editing_a_tenant_through_the_rest_api_writes_only_a_change(admin_client, acme, saved):
    url = f"/api/v1/tenants/{acme.slug}/"

    same = admin_client.patch(url, {"name": acme.name}, content_type="application/json")
    renamed = admin_client.patch(url, {"name": "Acme Two"}, content_type="application/json")

    assert same.status_code == renamed.status_code == 200
    assert saved == ["Tenant"]  # only the rename: tenant_update compares before it saves
    assert Tenant.objects.get(pk=acme.pk).name == "Acme Two"
    assert ApiKey.objects.count() == 0
