"""GET /api/v1/config-versions/: the versions, read-only, for those who may see them."""

from __future__ import annotations

import pytest

from routing.services import route_update
from tests import factories
from tests.gateway_project.management_api import assert_envelope, make_staff, token_client
from tests.routing.versions.support import doc

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.gateway_project.management_api")]

URL = "/api/v1/config-versions/"


@pytest.fixture
def version(db, committed):
    route = factories.make_route("chat", factories.make_model(factories.make_provider()))
    with committed() as new:
        route_update(route=route, description="over the API")
    return new[0]


def test_ops_list_versions_newest_first_without_their_documents(version):
    response = token_client(make_staff("olga", groups=("Ops",))).get(URL, {"limit": 2})
    assert response.status_code == 200, response.content
    body = response.json()
    first = body["results"][0]
    assert first["id"] == version.pk
    assert first["summary"] == "route chat (global): description changed"
    assert set(first) == {"id", "created_at", "actor", "summary", "routing_version", "rollback_of"}
    assert len(body["results"]) <= 2 and body["count"] >= 1


def test_one_version_has_its_document(version):
    client = token_client(make_staff("olga", groups=("Ops",)))
    body = client.get(f"{URL}{version.pk}/").json()
    assert body["document"] == doc(version)
    assert body["changes"] == version.changes
    filtered = client.get(URL, {"routing_version": version.routing_version}).json()
    assert version.pk in [row["id"] for row in filtered["results"]]
    assert client.get(URL, {"routing_version": "0" * 16}).json()["results"] == []


def test_an_unknown_version_is_a_404_and_finance_a_403(version):
    ops = token_client(make_staff("olga", groups=("Ops",)))
    assert_envelope(ops.get(f"{URL}999999/"), 404, "invalid_request_error")
    finance = token_client(make_staff("fred", groups=("Finance",)))
    assert_envelope(finance.get(URL), 403, "permission_error")
    assert_envelope(finance.get(f"{URL}{version.pk}/"), 403, "permission_error")
