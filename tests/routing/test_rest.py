"""The read-only route endpoints of the management API."""

from __future__ import annotations

import pytest
from django.urls import include, path

from tests import factories

urlpatterns = [path("api/v1/", include("gateway_project.rest_urls"))]
pytestmark = [pytest.mark.django_db, pytest.mark.urls(__name__)]


@pytest.fixture
def routes(acme):
    openai = factories.make_provider("openai", kind="openai")
    anthropic = factories.make_provider("anthropic", kind="anthropic")
    mini = factories.make_model(openai, "gpt-4o-mini")
    haiku = factories.make_model(anthropic, "claude-3-5-haiku")
    return {
        "chat": factories.make_route("chat", mini, haiku),
        "private": factories.make_route("private", haiku, tenant=acme),
    }


def test_routes_are_listed_with_their_ordered_targets(admin_client, routes):
    body = admin_client.get("/api/v1/routes/").json()
    assert [(route["name"], route["tenant"]) for route in body] == [
        ("chat", None),
        ("private", "acme"),
    ]
    assert [(t["position"], t["provider"], t["model"]) for t in body[0]["targets"]] == [
        (0, "openai", "gpt-4o-mini"),
        (1, "anthropic", "claude-3-5-haiku"),
    ]


def test_routes_can_be_filtered_by_owner(admin_client, routes):
    assert [r["name"] for r in admin_client.get("/api/v1/routes/?tenant=acme").json()] == [
        "private"
    ]
    assert [r["name"] for r in admin_client.get("/api/v1/routes/?tenant=global").json()] == ["chat"]


def test_a_route_is_retrieved_by_id_and_cannot_be_written(admin_client, routes):
    route = routes["chat"]
    assert admin_client.get(f"/api/v1/routes/{route.pk}/").json()["strategy"] == "fallback"
    response = admin_client.delete(f"/api/v1/routes/{route.pk}/")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_listing_routes_does_not_query_per_route(
    admin_client, routes, django_assert_max_num_queries
):
    for index in range(10):
        factories.make_route(f"extra-{index}", routes["chat"].targets.first().provider_model)
    with django_assert_max_num_queries(6):
        admin_client.get("/api/v1/routes/")
