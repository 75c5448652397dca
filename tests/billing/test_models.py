"""The limits' own validation, which the admin, the services and the importer all run."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from billing.models import RateLimit, Scope
from billing.services import RateLimitSpec, Subject, rate_limit_create
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_tenant_rate_limit_may_name_a_model(acme):
    limit = rate_limit_create(
        subject=Subject.of(acme), spec=RateLimitSpec(rpm=10, model_name="support_copilot")
    )
    assert limit.model_name == "support_copilot"


@pytest.mark.parametrize("scope", [Scope.GLOBAL, Scope.KEY, Scope.ROUTE])
def test_only_a_tenant_rate_limit_may_name_a_model(acme, scope):
    owner = {
        Scope.GLOBAL: None,
        Scope.KEY: factories.make_key(acme).api_key,
        Scope.ROUTE: factories.make_route("chat", factories.make_model(factories.make_provider())),
    }[scope]

    with pytest.raises(ValidationError) as caught:
        rate_limit_create(subject=Subject.of(owner), spec=RateLimitSpec(rpm=10, model_name="chat"))

    assert list(caught.value.message_dict) == ["model_name"]
    assert not RateLimit.objects.exists()
