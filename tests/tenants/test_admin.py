"""The tenant admin: tenants created, edited and suspended, their policy and allowed routes."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tenants.models import Tenant, UsagePolicy
from tests import factories

pytestmark = pytest.mark.django_db

# The tenant change form carries the (read-only) key inline's management form.
EMPTY_KEY_INLINE = {
    "api_keys-TOTAL_FORMS": "0",
    "api_keys-INITIAL_FORMS": "0",
    "api_keys-MIN_NUM_FORMS": "0",
    "api_keys-MAX_NUM_FORMS": "0",
}


# --- tenants ---


@pytest.mark.parametrize("url", ["admin:tenants_tenant_changelist", "admin:tenants_tenant_add"])
def test_tenant_pages_render(admin_client, acme, url):
    assert admin_client.get(reverse(url)).status_code == 200


def test_it_creates_a_tenant(admin_client):
    response = admin_client.post(
        reverse("admin:tenants_tenant_add"),
        {"slug": "initech", "name": "Initech", "status": "active", "metadata": "{}"}
        | EMPTY_KEY_INLINE,
    )
    assert response.status_code == 302, response.context and response.context["errors"]
    tenant = Tenant.objects.get(slug="initech")
    assert tenant.name == "Initech"
    assert response.url == reverse("admin:tenants_tenant_changelist")


def test_the_tenant_list_counts_only_active_keys(admin_client, acme):
    factories.make_key(acme)
    factories.make_key(acme, expires_at=timezone.now() + timedelta(days=1))
    revoked = factories.make_key(acme).api_key
    revoked.revoked_at = timezone.now()
    revoked.save()
    response = admin_client.get(reverse("admin:tenants_tenant_changelist"))
    assert response.context["cl"].result_list[0].active_key_count == 2


def test_actions_suspend_and_activate_tenants(admin_client, acme, globex):
    url = reverse("admin:tenants_tenant_changelist")
    admin_client.post(url, {"action": "suspend", "_selected_action": [acme.pk, globex.pk]})
    acme.refresh_from_db()
    globex.refresh_from_db()
    assert acme.status == globex.status == Tenant.Status.SUSPENDED

    admin_client.post(url, {"action": "activate", "_selected_action": [acme.pk]})
    acme.refresh_from_db()
    assert acme.status == Tenant.Status.ACTIVE


def test_actions_save_each_tenant_so_the_gateway_rebuilds_its_snapshot(
    admin_client, acme, globex, saved
):
    globex.status = Tenant.Status.SUSPENDED
    globex.save()
    saved.clear()

    admin_client.post(
        reverse("admin:tenants_tenant_changelist"),
        {"action": "suspend", "_selected_action": [acme.pk, globex.pk]},
    )

    assert saved == ["Tenant"]  # acme only: globex was suspended already


def test_the_tenant_page_lists_its_keys_read_only_with_a_link_to_issue_one(admin_client, acme):
    issued = factories.make_key(acme, name="deploy bot")
    response = admin_client.get(reverse("admin:tenants_tenant_change", args=[acme.pk]))
    content = response.content.decode()
    assert issued.api_key.prefix in content
    assert "deploy bot" in content
    assert issued.api_key.key_hash not in content
    assert issued.plaintext not in content
    assert f"{reverse('admin:tenants_apikey_add')}?tenant={acme.pk}" in content
    assert 'name="api_keys-0-name"' not in content  # shown, not editable


# --- policy and allowed routes ---


def tenant_form(tenant: Tenant, **fields: str) -> dict[str, str]:
    data = {
        "slug": tenant.slug,
        "name": tenant.name,
        "status": tenant.status,
        "metadata": "{}",
        "allowed_routes": "",
    }
    data |= dict.fromkeys(UsagePolicy.POLICY_FIELDS, "")
    return data | EMPTY_KEY_INLINE | fields


def test_the_tenant_page_has_a_collapsed_policy_fieldset(admin_client, acme):
    response = admin_client.get(reverse("admin:tenants_tenant_change", args=[acme.pk]))
    fieldsets = {fs.name: fs for fs in response.context["adminform"]}
    assert "collapse" in fieldsets["Policy"].classes
    assert set(response.context["adminform"].form.fields) >= {
        "allowed_routes",
        *UsagePolicy.POLICY_FIELDS,
    }


def test_a_tenants_policy_and_routes_are_saved(admin_client, acme, globex):
    echo = factories.make_model(factories.make_provider())
    factories.make_route("chat", echo)
    factories.make_route("acme-only", echo, tenant=acme)

    response = admin_client.post(
        reverse("admin:tenants_tenant_change", args=[acme.pk]),
        tenant_form(acme, allowed_routes="acme-only, chat", max_n="2", max_output_tokens="512"),
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    acme.refresh_from_db()
    assert acme.allowed_routes == ["acme-only", "chat"]
    assert (acme.max_n, acme.max_output_tokens, acme.max_depth) == (2, 512, None)
    listed = admin_client.get(reverse("admin:tenants_tenant_changelist")).content.decode()
    assert "acme-only, chat" in listed


def test_a_tenant_may_not_be_limited_to_routes_it_cannot_see(admin_client, acme, globex):
    factories.make_route(
        "globex-only", factories.make_model(factories.make_provider()), tenant=globex
    )

    response = admin_client.post(
        reverse("admin:tenants_tenant_change", args=[acme.pk]),
        tenant_form(acme, allowed_routes="globex-only, nope"),
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["allowed_routes"] == [
        "Tenant acme has no route named globex-only, nope."
    ]
    acme.refresh_from_db()
    assert acme.allowed_routes == []


@pytest.mark.parametrize("value", ["0", "-1"])
def test_policy_limits_are_whole_numbers_from_one(admin_client, acme, value):
    response = admin_client.post(
        reverse("admin:tenants_tenant_change", args=[acme.pk]), tenant_form(acme, max_n=value)
    )
    assert response.status_code == 200
    assert "max_n" in response.context["adminform"].form.errors


def test_a_new_tenant_gets_the_policy_from_the_add_form(admin_client):
    response = admin_client.post(
        reverse("admin:tenants_tenant_add"),
        {"slug": "initech", "name": "Initech", "status": "active", "metadata": "{}"}
        | dict.fromkeys(UsagePolicy.POLICY_FIELDS, "")
        | {"max_messages": "50"}
        | EMPTY_KEY_INLINE,
    )
    assert response.status_code == 302, response.context and response.context["errors"]
    assert Tenant.objects.get(slug="initech").max_messages == 50
