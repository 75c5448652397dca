"""gateway_project/rest_urls.py: every view it maps authenticates by token or session (never
Basic) and checks model permissions; the API root lists the endpoints to staff only."""

from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import URLPattern, URLResolver
from rest_framework.authentication import SessionAuthentication

from gateway_project import rest_urls
from gateway_project.lib.drf_permissions import ModelPermissions
from tenants.rest_auth import ManagementTokenAuthentication
from tests.gateway_project.management_api import (
    PASSWORD,
    assert_envelope,
    make_staff,
    session,
    token_client,
)

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway_project.management_api")]


def test_every_management_view_uses_model_permissions_and_no_basic_auth():
    def views(patterns: list) -> list[type]:
        found: list[type] = []
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                found += views(pattern.url_patterns)
            elif isinstance(pattern, URLPattern):
                found.append(pattern.callback.cls)
        return found

    found = views(rest_urls.urlpatterns)
    assert len(found) >= 6
    for view in found:
        assert tuple(view.authentication_classes) == (
            ManagementTokenAuthentication,
            SessionAuthentication,
        )
        assert any(issubclass(cls, ModelPermissions) for cls in view.permission_classes), view


def test_the_api_root_lists_the_endpoints_for_a_staff_user(db):
    client = token_client(make_staff("nobody"))
    response = client.get("/api/v1/")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "tenants": "http://testserver/api/v1/tenants/",
        "routes": "http://testserver/api/v1/routes/",
        "config-versions": "http://testserver/api/v1/config-versions/",
        "cache-stats": "http://testserver/api/v1/cache/stats",
        "billing-usage": "http://testserver/api/v1/billing/usage/",
        "billing-exports": "http://testserver/api/v1/billing/exports/",
        "schema": "http://testserver/api/v1/schema/",
        "tenant-keys": "http://testserver/api/v1/tenants/{slug}/keys/",
    }


def test_the_api_root_is_browsable_for_a_staff_session(db):
    response = session(make_staff("nobody")).get("/api/v1/", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert b"/api/v1/tenants/" in response.content


def test_the_api_root_refuses_anonymous_and_non_staff_callers(db):
    assert_envelope(Client().get("/api/v1/"), 401, "invalid_request_error", "not_authenticated")
    user = get_user_model().objects.create_user("eve", password=PASSWORD)
    assert_envelope(session(user).get("/api/v1/"), 403, "permission_error", "permission_denied")
