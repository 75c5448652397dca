"""A route's page shows each target's circuit state beside it, read from Redis."""

from __future__ import annotations

import re

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from providers.circuit import breaker
from routing.models import RouteTarget
from tests import factories
from tests.providers.test_circuit import target

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_circuits")]


def fail_once(provider: str, model: str, *, cooldown: int = 30) -> None:
    """One failure at threshold 1: the circuit opens (half-open at once with no cool-down)."""
    async_to_sync(breaker.record)(
        target(model, provider=provider, threshold=1, cooldown=cooldown),
        ok=False,
        kind="server_error",
    )


def cells(content: str) -> dict[int, tuple[str, str]]:
    """Target id -> (data-state, text) of each circuit cell."""
    return {
        int(pk): (state, text)
        for pk, state, text in re.findall(
            r'<span id="circuit-state-(\d+)" class="circuit-state circuit-[\w-]+" '
            r'data-state="([\w-]+)">([^<]*)</span>',
            content,
        )
    }


@pytest.fixture
def route(db):
    primary = factories.make_model(factories.make_provider("primary-ai"), "big")
    fallback = factories.make_model(factories.make_provider("fallback-ai"), "small")
    probe = factories.make_model(factories.make_provider("probe-ai"), "tiny")
    return factories.make_route("chat", primary, fallback, probe)


def test_each_target_shows_its_circuit_state(admin_client, route):
    primary, fallback, probe = RouteTarget.objects.filter(route=route).order_by("position")
    fail_once("primary-ai", "big")
    fail_once("probe-ai", "tiny", cooldown=0)

    page = admin_client.get(reverse("admin:routing_route_change", args=[route.pk]))

    assert page.status_code == 200
    shown = cells(page.content.decode())
    assert shown[primary.pk][0] == "open"
    assert re.fullmatch(r"open until \d\d:\d\d:\d\d UTC", shown[primary.pk][1])
    assert shown[fallback.pk] == ("closed", "closed")
    assert shown[probe.pk][0] == "half-open"


def test_the_states_are_read_in_one_call_for_the_whole_route(admin_client, route, monkeypatch):
    import routing.admin

    calls = []
    real = routing.admin.circuit_states
    monkeypatch.setattr(
        routing.admin, "circuit_states", lambda **kw: calls.append(kw["keys"]) or real(**kw)
    )

    admin_client.get(reverse("admin:routing_route_change", args=[route.pk]))

    assert calls == [["primary-ai/big", "fallback-ai/small", "probe-ai/tiny"]]


def test_with_redis_away_the_states_are_unknown_not_an_error(admin_client, route, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    page = admin_client.get(reverse("admin:routing_route_change", args=[route.pk]))

    assert page.status_code == 200
    shown = cells(page.content.decode())
    assert len(shown) == 3
    assert set(shown.values()) == {("unknown", "unknown (Redis unreachable)")}


def test_a_new_routes_blank_rows_have_no_state(admin_client, route):
    page = admin_client.get(reverse("admin:routing_route_add"))

    assert page.status_code == 200
    assert cells(page.content.decode()) == {}
