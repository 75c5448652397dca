"""Budget and rate-limit services: subjects by id (billing sits below routing), updates
that write only what differs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Budget, Scope
from billing.services import (
    BudgetSpec,
    RateLimitSpec,
    Subject,
    budget_create,
    budget_update,
    rate_limit_create,
    rate_limit_update,
)
from gateway_project.lib.upsert import Change
from tests import factories

pytestmark = pytest.mark.django_db


def test_a_subject_names_its_owner_by_id_whatever_kind_it_is(acme):
    api_key = factories.make_key(acme).api_key
    route = factories.make_route("chat", factories.make_model(factories.make_provider()))

    assert Subject.of(None) == Subject(Scope.GLOBAL)
    assert Subject.of(acme) == Subject(Scope.TENANT, tenant_id=acme.pk)
    assert Subject.of(api_key) == Subject(Scope.KEY, api_key_id=api_key.pk)
    assert Subject.of(route) == Subject(Scope.ROUTE, route_id=route.pk)


def test_a_subject_refuses_an_owner_no_limit_can_have():
    provider = factories.make_provider()

    with pytest.raises(TypeError, match="tenant, key or route"):
        Subject.of(provider)


def test_a_route_budget_is_stored_against_the_route(acme):
    route = factories.make_route("chat", factories.make_model(factories.make_provider()))

    budget = budget_create(subject=Subject.of(route), spec=BudgetSpec(max_tokens=10))

    assert Budget.objects.get(pk=budget.pk).route == route


def test_updating_a_budget_writes_only_a_change(acme, saved):
    budget = budget_create(subject=Subject.of(acme), spec=BudgetSpec(max_cost_usd=Decimal(5)))
    saved.clear()

    same = budget_update(budget=budget, subject=Subject.of(acme), spec=BudgetSpec.of(budget))
    raised = budget_update(
        budget=budget, subject=Subject.of(acme), spec=BudgetSpec(max_cost_usd=Decimal(9))
    )

    assert (same.change, raised.change) == (Change.UNCHANGED, Change.UPDATED)
    assert saved == ["Budget"]


def test_an_update_is_validated_like_a_create(acme):
    limit = rate_limit_create(subject=Subject.of(acme), spec=RateLimitSpec(rpm=5))
    route = factories.make_route("chat", factories.make_model(factories.make_provider()))

    with pytest.raises(Exception, match="Only a tenant rate limit can name a model"):
        rate_limit_update(
            rate_limit=limit, subject=Subject.of(route), spec=RateLimitSpec(rpm=5, model_name="x")
        )
