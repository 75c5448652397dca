"""Route names reach tenants through the catalog routing registers (tenants sit below it)."""

from __future__ import annotations

import pytest
from django.core.exceptions import ImproperlyConfigured

from tenants import route_names
from tests import factories

pytestmark = pytest.mark.django_db


def test_routing_registers_the_route_names_a_tenant_can_see(acme, globex):
    model = factories.make_model(factories.make_provider())
    factories.make_route("shared", model)
    factories.make_route("acme-only", model, tenant=acme)
    factories.make_route("globex-only", model, tenant=globex)

    assert route_names.route_names_visible_to(tenant=acme) == {"shared", "acme-only"}
    assert route_names.route_names_visible_to(tenant=acme, among=["globex-only", "shared"]) == {
        "shared"
    }
    assert route_names.route_names_known(limit=2) == ["acme-only", "globex-only"]


def test_without_a_registered_catalog_it_says_so(monkeypatch, acme):
    monkeypatch.setattr(route_names, "_catalog", None)

    with pytest.raises(ImproperlyConfigured, match="route catalog"):
        route_names.route_names_visible_to(tenant=acme)
