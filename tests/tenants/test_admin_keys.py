"""The API key admin: one write path for keys, the plaintext shown exactly once."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from tenants.keys import KEY_MARK, hash_key, matches
from tenants.models import ApiKey, Tenant
from tests import factories

pytestmark = pytest.mark.django_db

KEY_RE = re.compile(re.escape(KEY_MARK) + r"[A-Za-z0-9]{48}")


def issue_through_admin(client, tenant: Tenant, **fields: str):
    data = {"tenant": str(tenant.pk), "name": "ci", "allowed_routes": "", "expires_at_0": ""}
    data.update(fields)
    data.setdefault("expires_at_1", "")
    return client.post(reverse("admin:tenants_apikey_add"), data)


def shown_messages(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


# --- API keys ---


@pytest.mark.parametrize("url", ["admin:tenants_apikey_changelist", "admin:tenants_apikey_add"])
def test_key_pages_render(admin_client, acme, url):
    factories.make_key(acme)
    assert admin_client.get(reverse(url)).status_code == 200


def test_the_add_form_is_prefilled_with_the_tenant_from_the_link(admin_client, acme):
    response = admin_client.get(reverse("admin:tenants_apikey_add") + f"?tenant={acme.pk}")
    assert response.context["adminform"].form.initial["tenant"] == str(acme.pk)


def test_issuing_a_key_shows_the_plaintext_once_and_stores_only_prefix_and_hash(admin_client, acme):
    response = issue_through_admin(admin_client, acme, name="ci runner")

    # Rendered in the response to the POST, never redirected: nothing carries the key over.
    assert response.status_code == 200
    assert response.headers["Cache-Control"].startswith("max-age=0")
    assert "no-store" in response.headers["Cache-Control"]
    content = response.content.decode()
    plaintext = re.search(r'<code id="issued-key" class="issued-key">([^<]+)</code>', content)[1]
    assert KEY_RE.fullmatch(plaintext)
    assert any("will not be shown again" in text for text in shown_messages(response))
    assert not any(plaintext in text for text in shown_messages(response))
    assert content.count(plaintext) == 1  # the copy button reads it from the page

    api_key = ApiKey.objects.get()
    assert api_key.name == "ci runner"
    assert api_key.tenant == acme
    assert api_key.prefix == plaintext[:12]
    assert api_key.key_hash == hash_key(plaintext)
    assert matches(plaintext, api_key.key_hash)
    stored = [str(value) for value in ApiKey.objects.values().get().values()]
    assert not any(plaintext in value for value in stored)

    # Not in a messages cookie, not in the session.
    assert "messages" not in response.cookies or plaintext not in response.cookies["messages"].value
    assert plaintext not in str(dict(admin_client.session.items()))

    for url in (
        reverse("admin:tenants_apikey_changelist"),
        reverse("admin:tenants_apikey_change", args=[api_key.pk]),
        reverse("admin:tenants_tenant_change", args=[acme.pk]),
    ):
        page = admin_client.get(url)
        assert page.status_code == 200
        assert plaintext not in page.content.decode()
        assert api_key.key_hash not in page.content.decode()


def test_issuing_a_key_records_route_names_and_expiry(admin_client, acme, globex):
    local = factories.make_provider()
    echo = factories.make_model(local)
    factories.make_route("chat", echo)
    factories.make_route("acme-only", echo, tenant=acme)
    expires = timezone.now() + timedelta(days=30)

    response = issue_through_admin(
        admin_client,
        acme,
        allowed_routes="chat, acme-only, chat",
        expires_at_0=expires.strftime("%Y-%m-%d"),
        expires_at_1=expires.strftime("%H:%M:%S"),
    )

    assert response.status_code == 200
    api_key = ApiKey.objects.get()
    assert api_key.allowed_routes == ["chat", "acme-only"]
    assert api_key.expires_at is not None
    assert abs(api_key.expires_at - expires) < timedelta(seconds=1)


def test_the_add_form_rejects_route_names_the_tenant_cannot_see(admin_client, acme, globex):
    local = factories.make_provider()
    factories.make_route("globex-only", factories.make_model(local), tenant=globex)

    response = issue_through_admin(admin_client, acme, allowed_routes="globex-only, nope")

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["allowed_routes"] == [
        "Tenant acme has no route named globex-only, nope."
    ]
    assert not ApiKey.objects.exists()


def test_the_change_form_checks_route_names_too(admin_client, acme, globex):
    factories.make_route(
        "globex-only", factories.make_model(factories.make_provider()), tenant=globex
    )
    api_key = factories.make_key(acme).api_key

    response = admin_client.post(
        reverse("admin:tenants_apikey_change", args=[api_key.pk]),
        {"name": "ci", "allowed_routes": "globex-only", "expires_at_0": "", "expires_at_1": ""},
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["allowed_routes"] == [
        "Tenant acme has no route named globex-only."
    ]
    api_key.refresh_from_db()
    assert api_key.allowed_routes == []


def test_the_add_form_rejects_an_expiry_in_the_past(admin_client, acme):
    past = timezone.now() - timedelta(days=1)
    response = issue_through_admin(
        admin_client,
        acme,
        expires_at_0=past.strftime("%Y-%m-%d"),
        expires_at_1=past.strftime("%H:%M:%S"),
    )
    assert "expires_at" in response.context["adminform"].form.errors
    assert not ApiKey.objects.exists()


def test_the_key_change_page_shows_the_prefix_never_the_hash(admin_client, acme):
    issued = factories.make_key(acme)
    response = admin_client.get(reverse("admin:tenants_apikey_change", args=[issued.api_key.pk]))
    content = response.content.decode()
    assert issued.api_key.prefix in content
    assert issued.api_key.key_hash not in content
    assert "key_hash" not in content
    assert reverse("admin:tenants_apikey_revoke", args=[issued.api_key.pk]) in content


def test_editing_a_key_keeps_its_hash_and_tenant(admin_client, acme):
    issued = factories.make_key(acme)
    api_key = issued.api_key
    response = admin_client.post(
        reverse("admin:tenants_apikey_change", args=[api_key.pk]),
        {"name": "renamed", "allowed_routes": "", "expires_at_0": "", "expires_at_1": ""},
    )
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.name == "renamed"
    assert api_key.tenant == acme
    assert matches(issued.plaintext, api_key.key_hash)


def test_the_revoke_action_asks_then_revokes_the_selected_keys(admin_client, acme):
    first = factories.make_key(acme).api_key
    second = factories.make_key(acme).api_key
    kept = factories.make_key(acme).api_key
    url = reverse("admin:tenants_apikey_changelist")
    selected = {"action": "revoke", "_selected_action": [first.pk, second.pk]}

    asked = admin_client.post(url, selected)

    assert asked.status_code == 200
    assert not ApiKey.objects.filter(revoked_at__isnull=False).exists()
    content = asked.content.decode()
    assert 'id="revoke-selected-confirm"' in content
    assert first.prefix in content and second.prefix in content and kept.prefix not in content

    done = admin_client.post(url, {**selected, "post": "yes"})

    assert done.status_code == 302
    assert set(ApiKey.objects.filter(revoked_at__isnull=False)) == {first, second}
    kept.refresh_from_db()
    assert kept.revoked_at is None
    response = admin_client.get(reverse("admin:tenants_apikey_changelist") + "?status=revoked")
    assert set(response.context["cl"].result_list) == {first, second}


def test_the_revoke_action_goes_through_the_service(admin_client, acme, monkeypatch):
    import tenants.admin.api_key as module

    calls = []
    real = module.api_key_revoke
    monkeypatch.setattr(module, "api_key_revoke", lambda **kw: calls.append(kw) or real(**kw))
    api_key = factories.make_key(acme).api_key

    admin_client.post(
        reverse("admin:tenants_apikey_changelist"),
        {"action": "revoke", "_selected_action": [api_key.pk], "post": "yes"},
    )

    assert [call["api_key"].pk for call in calls] == [api_key.pk]


def test_the_issued_key_page_has_a_copy_button_and_no_outside_script(admin_client, acme):
    content = issue_through_admin(admin_client, acme).content.decode()

    assert '<button type="button" class="button" id="copy-key">Copy</button>' in content
    assert 'id="copy-key-status"' in content
    assert "navigator.clipboard.writeText" in content  # and execCommand("copy") without it
    assert 'document.execCommand("copy")' in content
    assert not re.search(r'<script[^>]+src="(https?:)?//', content)  # nothing from a CDN


def test_the_revoke_button_asks_then_revokes(admin_client, acme):
    api_key = factories.make_key(acme).api_key
    url = reverse("admin:tenants_apikey_revoke", args=[api_key.pk])

    change = admin_client.get(reverse("admin:tenants_apikey_change", args=[api_key.pk]))
    assert f'<a id="revoke-key" href="{url}">' in change.content.decode()
    asked = admin_client.get(url)
    assert asked.status_code == 200
    assert 'id="revoke-key-confirm"' in asked.content.decode()
    api_key.refresh_from_db()
    assert api_key.revoked_at is None

    response = admin_client.post(url)
    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.revoked_at is not None
    page = admin_client.get(reverse("admin:tenants_apikey_change", args=[api_key.pk]))
    assert url not in page.content.decode()


def test_key_status_is_active_revoked_or_expired(admin_client, acme):
    active = factories.make_key(acme, name="a").api_key
    expired = factories.make_key(acme, name="e").api_key
    expired.expires_at = timezone.now() - timedelta(minutes=1)
    expired.save()
    revoked = factories.make_key(acme, name="r").api_key
    revoked.revoked_at = timezone.now()
    revoked.save()

    for status, expected in (("active", active), ("expired", expired), ("revoked", revoked)):
        response = admin_client.get(
            reverse("admin:tenants_apikey_changelist") + f"?status={status}"
        )
        assert list(response.context["cl"].result_list) == [expected]
        assert f'<td class="field-status">{status}</td>' in response.content.decode()


# --- a key's policy ---


def test_a_key_is_issued_with_its_policy(admin_client, acme):
    response = issue_through_admin(admin_client, acme, max_prompt_tokens="1000", max_depth="8")
    assert response.status_code == 200
    api_key = ApiKey.objects.get()
    assert (api_key.max_prompt_tokens, api_key.max_depth, api_key.max_n) == (1000, 8, None)


def test_a_keys_policy_is_edited_on_its_page(admin_client, acme):
    api_key = factories.make_key(acme).api_key
    url = reverse("admin:tenants_apikey_change", args=[api_key.pk])
    fieldsets = {fs.name: fs for fs in admin_client.get(url).context["adminform"]}
    assert "collapse" in fieldsets["Policy"].classes

    response = admin_client.post(
        url,
        {"name": "ci", "allowed_routes": "", "expires_at_0": "", "expires_at_1": ""}
        | {"max_body_bytes": "65536"},
    )

    assert response.status_code == 302
    api_key.refresh_from_db()
    assert api_key.max_body_bytes == 65536
