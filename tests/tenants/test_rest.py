"""The DRF management API for tenants and keys: errors in the OpenAI envelope.

Who may call it: permissions in tests/gateway_project/lib/test_drf_permissions.py, tokens in
tests/tenants/test_rest_auth.py, sessions and CSRF in tests/gateway_project/lib/test_drf.py.
"""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.urls import include, path

from tenants.keys import hash_key, matches
from tenants.models import ApiKey, Tenant
from tests import factories

# Mounted here as the project will mount it, so these tests do not depend on urls.py.
urlpatterns = [path("api/v1/", include("gateway_project.rest_urls"))]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


def assert_envelope(response, status: int, type_: str, code: str | None = None) -> dict:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == type_
    if code is not None:
        assert error["code"] == code
    return error


def test_staff_create_list_retrieve_and_update_tenants(admin_client, acme):
    created = admin_client.post(
        "/api/v1/tenants/", {"slug": "initech", "name": "Initech"}, content_type="application/json"
    )
    assert created.status_code == 201, created.content
    assert created.json()["status"] == "active"
    assert Tenant.objects.filter(slug="initech").exists()

    listed = admin_client.get("/api/v1/tenants/").json()
    assert [tenant["slug"] for tenant in listed] == ["acme", "initech"]

    assert admin_client.get("/api/v1/tenants/acme/").json()["name"] == "Acme"
    patched = admin_client.patch(
        "/api/v1/tenants/acme/", {"status": "suspended"}, content_type="application/json"
    )
    assert patched.json()["status"] == "suspended"
    acme.refresh_from_db()
    assert acme.status == Tenant.Status.SUSPENDED


def test_a_duplicate_slug_is_a_400_in_the_envelope(admin_client, acme):
    response = admin_client.post(
        "/api/v1/tenants/", {"slug": "acme", "name": "Again"}, content_type="application/json"
    )
    error = assert_envelope(response, 400, "invalid_request_error", "unique")
    assert error["param"] == "slug"
    assert error["message"].startswith("slug: ")


def test_an_unknown_tenant_is_a_404_in_the_envelope(admin_client):
    assert_envelope(
        admin_client.get("/api/v1/tenants/nope/"), 404, "invalid_request_error", "not_found"
    )


def test_issuing_a_key_returns_the_plaintext_once(admin_client, acme):
    local = factories.make_provider()
    factories.make_route("chat", factories.make_model(local))

    response = admin_client.post(
        "/api/v1/tenants/acme/keys/",
        {"name": "ci", "allowed_routes": ["chat"]},
        content_type="application/json",
    )

    assert response.status_code == 201, response.content
    assert response.headers["Cache-Control"] == "no-store"
    body = response.json()
    plaintext = body["key"]
    api_key = ApiKey.objects.get()
    assert body["prefix"] == api_key.prefix == plaintext[:12]
    assert body["tenant"] == "acme"
    assert body["status"] == "active"
    assert body["allowed_routes"] == ["chat"]
    assert api_key.key_hash == hash_key(plaintext)
    assert matches(plaintext, api_key.key_hash)
    assert "key_hash" not in body

    for url in ("/api/v1/tenants/acme/keys/", f"/api/v1/tenants/acme/keys/{api_key.pk}/"):
        again = admin_client.get(url)
        assert again.status_code == 200
        assert plaintext not in again.content.decode()
        assert api_key.key_hash not in again.content.decode()


def test_a_key_for_an_unknown_route_is_refused(admin_client, acme):
    response = admin_client.post(
        "/api/v1/tenants/acme/keys/",
        {"name": "ci", "allowed_routes": ["nope"]},
        content_type="application/json",
    )
    error = assert_envelope(response, 400, "invalid_request_error", "unknown_route")
    assert error["param"] == "allowed_routes"
    assert not ApiKey.objects.exists()


def test_a_key_that_has_already_expired_is_refused(admin_client, acme):
    response = admin_client.post(
        "/api/v1/tenants/acme/keys/",
        {"name": "ci", "expires_at": "2000-01-01T00:00:00Z"},
        content_type="application/json",
    )
    error = assert_envelope(response, 400, "invalid_request_error", "invalid")
    assert error["param"] == "expires_at"
    assert error["message"] == "expires_at: A new key must expire in the future."
    assert not ApiKey.objects.exists()


def test_keys_are_listed_per_tenant_and_revoked(admin_client, acme, globex):
    mine = factories.make_key(acme).api_key
    factories.make_key(globex)

    listed = admin_client.get("/api/v1/tenants/acme/keys/").json()
    assert [key["prefix"] for key in listed] == [mine.prefix]

    revoked = admin_client.post(f"/api/v1/tenants/acme/keys/{mine.pk}/revoke/")
    assert revoked.status_code == 200
    assert revoked.json()["status"] == "revoked"
    mine.refresh_from_db()
    assert mine.revoked_at is not None


def test_a_tenant_cannot_revoke_another_tenants_key_by_id(admin_client, acme, globex):
    theirs = factories.make_key(globex).api_key
    response = admin_client.post(f"/api/v1/tenants/acme/keys/{theirs.pk}/revoke/")
    assert_envelope(response, 404, "invalid_request_error", "not_found")
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_a_non_staff_user_gets_403_in_the_envelope(client, acme, db):
    user = get_user_model().objects.create_user("eve", password="x")
    client.force_login(user)
    for response in (
        client.get("/api/v1/tenants/"),
        client.post("/api/v1/tenants/acme/keys/", {"name": "x"}, content_type="application/json"),
    ):
        assert_envelope(response, 403, "permission_error", "permission_denied")
    assert not ApiKey.objects.exists()


def test_an_anonymous_caller_gets_401_without_a_basic_challenge(client):
    response = client.get("/api/v1/tenants/")
    assert_envelope(response, 401, "invalid_request_error", "not_authenticated")
    assert response.headers["WWW-Authenticate"] == "Token"
