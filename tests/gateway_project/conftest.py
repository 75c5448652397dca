"""A suspended tenant and its key, for the management API tests."""

from __future__ import annotations

import pytest

from tenants.models import ApiKey, Tenant
from tests import factories


@pytest.fixture
def suspended(db) -> Tenant:
    return factories.make_tenant("globex", status=Tenant.Status.SUSPENDED)


@pytest.fixture
def their_key(suspended) -> ApiKey:
    return factories.make_key(suspended).api_key
