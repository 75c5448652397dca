"""Route services the admin shares with the importer: by id, validated, writing only changes."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from gateway_project.lib.upsert import Change
from routing.services import (
    TargetSpec,
    route_create,
    route_target_create,
    route_target_update,
    route_update,
)
from tests import factories

pytestmark = pytest.mark.django_db


@pytest.fixture
def model(db):
    return factories.make_model(factories.make_provider())


def test_route_create_saves_the_route_with_its_targets_in_order(model, saved):
    other = factories.make_model(model.provider, "other")
    saved.clear()

    route = route_create(
        name="chat", targets=[TargetSpec(provider_model=other), TargetSpec(provider_model=model)]
    )

    assert [t.provider_model for t in route.targets.order_by("position")] == [other, model]
    assert saved == ["Route", "RouteTarget", "RouteTarget"]


def test_route_update_checks_the_threshold_like_route_upsert(model):
    route = route_create(name="chat")

    with pytest.raises(ValidationError) as refused:
        route_update(route=route, semantic_threshold=Decimal("1.5"))

    assert "semantic_threshold" in refused.value.message_dict


def test_route_update_renames_and_writes_only_a_change(model, saved):
    route = route_create(name="chat")
    saved.clear()

    assert route_update(route=route, name="chat").change == Change.UNCHANGED
    assert route_update(route=route, name="talk").change == Change.UPDATED
    assert saved == ["Route"]


def test_a_target_is_validated_and_updated_in_place(model, saved):
    route = route_create(name="chat")
    target = route_target_create(route=route, provider_model=model)
    saved.clear()

    result = route_target_update(target=target, weight=3)

    assert (result.change, result.instance.pk, saved) == (
        Change.UPDATED,
        target.pk,
        ["RouteTarget"],
    )
