"""Budget and rate-limit admin: the models' scope validation reaches the form."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db.models.signals import post_save
from django.urls import reverse

from billing.models import Budget, RateLimit
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def saved() -> Iterator[list[str]]:
    """The models saved (post_save, which invalidates the proxy's snapshot) during the test."""
    seen: list[str] = []

    def record(sender: type, **kwargs: object) -> None:
        seen.append(sender.__name__)

    post_save.connect(record, weak=False, dispatch_uid="test-billing-saved")
    yield seen
    post_save.disconnect(dispatch_uid="test-billing-saved")


@pytest.mark.parametrize(
    "url",
    [
        "admin:billing_budget_changelist",
        "admin:billing_budget_add",
        "admin:billing_ratelimit_changelist",
        "admin:billing_ratelimit_add",
    ],
)
def test_limit_pages_render(admin_client, acme, url):
    Budget.objects.create(scope="tenant", tenant=acme, max_tokens=1000)
    RateLimit.objects.create(scope="global", rpm=60)
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
