"""gateway_project/lib/drf.py: no HTTP Basic, sessions only with their CSRF token, and errors
in the OpenAI envelope."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.gateway_project.management_api import (
    PASSWORD,
    assert_envelope,
    basic,
    make_staff,
    session,
)

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway_project.management_api")]


def test_an_anonymous_caller_gets_a_401_envelope_without_a_basic_challenge(db):
    response = Client().get("/api/v1/tenants/")
    assert_envelope(response, 401, "invalid_request_error", "not_authenticated")
    assert "basic" not in response.headers.get("WWW-Authenticate", "").lower()


def test_basic_credentials_are_not_accepted(db):
    make_staff("ops", "tenants.view_tenant")
    response = Client().get("/api/v1/tenants/", headers=basic("ops", PASSWORD))
    assert_envelope(response, 401, "invalid_request_error", "not_authenticated")
    assert "basic" not in response.headers.get("WWW-Authenticate", "").lower()


def test_a_cross_site_form_post_with_remembered_basic_credentials_does_not_revoke(their_key):
    # What a browser sends once it has answered a Basic challenge: the credentials again,
    # on a form posted from any other site.
    make_staff("ops", "tenants.change_apikey", "tenants.view_apikey")
    browser = Client(enforce_csrf_checks=True)
    response = browser.post(
        f"/api/v1/tenants/globex/keys/{their_key.pk}/revoke/",
        headers={**basic("ops", PASSWORD), "Origin": "https://evil.example"},
    )
    assert response.status_code in (401, 403)
    their_key.refresh_from_db()
    assert their_key.revoked_at is None


def test_a_cross_site_form_post_with_the_session_cookie_but_no_csrf_token_is_refused(their_key):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_staff("ops", "tenants.change_apikey", "tenants.view_apikey"))
    response = browser.post(
        f"/api/v1/tenants/globex/keys/{their_key.pk}/revoke/",
        {"anything": "x"},  # form-encoded, as an HTML form on another site would send it
        headers={"Origin": "https://evil.example", "Referer": "https://evil.example/"},
    )
    error = assert_envelope(response, 403, "permission_error", "permission_denied")
    assert "CSRF" in error["message"]
    their_key.refresh_from_db()
    assert their_key.revoked_at is None


def test_the_same_session_with_its_csrf_token_may_revoke(their_key):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(make_staff("ops", "tenants.change_apikey", "tenants.view_apikey"))
    browser.get("/api/v1/tenants/globex/keys/", headers={"Accept": "text/html"})
    token = browser.cookies["csrftoken"].value
    response = browser.post(
        f"/api/v1/tenants/globex/keys/{their_key.pk}/revoke/", headers={"X-CSRFToken": token}
    )
    assert response.status_code == 200, response.content
    their_key.refresh_from_db()
    assert their_key.revoked_at is not None


def test_a_bad_cache_stats_tenant_id_is_a_400_in_the_envelope(db):
    client = session(make_staff("routes", "routing.view_route"))
    error = assert_envelope(
        client.get("/api/v1/cache/stats?tenant_id=abc"), 400, "invalid_request_error", "invalid"
    )
    assert error["param"] == "tenant_id"
