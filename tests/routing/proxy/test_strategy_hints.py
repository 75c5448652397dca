"""Routing hints and open circuits applied to the order of targets
(routing/proxy/strategies.py::order_targets): exclude, prefer, skip."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from gateway_project.lib.errors import GatewayError
from providers.base import Target
from routing.proxy.hints import NO_HINTS, RoutingHints
from routing.proxy.strategies import (
    LatencyTracker,
    order_targets,
)
from tests.routing.proxy.strategy_support import (
    binomial_interval,
    canary_route,
    names,
    route,
    target,
)

# -- hints ---------------------------------------------------------------------------


def test_excluded_providers_lose_their_targets():
    r = route("fallback", target("openai"), target("anthropic"), target("openai", "mini"))
    order = order_targets(r, hints=RoutingHints(exclude_providers=("openai",)))
    assert names(order) == ["anthropic/m"]


def test_exclusion_ignores_the_case_of_the_configured_provider_name():
    r = route("fallback", target("OpenAI"), target("anthropic"))
    order = order_targets(r, hints=RoutingHints(exclude_providers=("openai",)))
    assert names(order) == ["anthropic/m"]


def test_excluding_a_provider_the_route_does_not_use_changes_nothing():
    r = route("fallback", target("a"), target("b"))
    assert names(order_targets(r, hints=RoutingHints(exclude_providers=("zz",)))) == [
        "a/m",
        "b/m",
    ]


def test_excluding_every_target_is_a_400_saying_none_is_left():
    r = route("fallback", target("openai"), target("azure"))
    with pytest.raises(GatewayError) as caught:
        order_targets(r, hints=RoutingHints(exclude_providers=("azure", "openai")))
    assert caught.value.status == 400
    assert caught.value.code == "no_target_left"
    assert "azure, openai" in caught.value.message


def test_preferred_providers_move_to_the_front_in_stable_order():
    r = route(
        "fallback",
        target("a"),
        target("b", "one"),
        target("c"),
        target("b", "two"),
    )
    order = order_targets(r, hints=RoutingHints(prefer_providers=("b",)))
    assert names(order) == ["b/one", "b/two", "a/m", "c/m"]


def test_several_preferred_providers_come_in_the_order_the_client_listed():
    r = route("fallback", target("a"), target("b"), target("c"))
    order = order_targets(r, hints=RoutingHints(prefer_providers=("c", "b")))
    assert names(order) == ["c/m", "b/m", "a/m"]


def test_preferring_a_provider_the_route_does_not_use_changes_nothing():
    r = route("fallback", target("a"), target("b"))
    assert names(order_targets(r, hints=RoutingHints(prefer_providers=("zz",)))) == [
        "a/m",
        "b/m",
    ]


def test_an_exclusion_beats_a_preference_for_the_same_provider():
    r = route("fallback", target("a"), target("b"))
    hints = RoutingHints(prefer_providers=("b",), exclude_providers=("b",))
    assert names(order_targets(r, hints=hints)) == ["a/m"]


def test_preferring_the_canary_sends_every_request_there_first():
    r = canary_route()
    rng = random.Random(11)
    hints = RoutingHints(prefer_providers=("canary",))
    for _ in range(200):
        assert [t.provider_name for t in order_targets(r, hints=hints, rng=rng)] == [
            "canary",
            "stable",
        ]


def test_excluding_the_heaviest_target_splits_the_rest_by_their_own_weights():
    r = route(
        "weighted",
        target("big", weight=60),
        target("mid", weight=30),
        target("small", weight=10),
    )
    hints = RoutingHints(exclude_providers=("big",))
    rng = random.Random(99)
    firsts = Counter(order_targets(r, hints=hints, rng=rng)[0].provider_name for _ in range(1000))
    assert set(firsts) == {"mid", "small"}
    # small's share is 10/40, not the 10/100 it would be if "big" were merely skipped.
    low, high = binomial_interval(1000, 0.25, 0.999)
    assert low <= firsts["small"] <= high


def test_round_robin_rotates_over_what_the_exclusions_leave():
    r = route("round_robin", target("a"), target("b"), target("c"))
    hints = RoutingHints(exclude_providers=("b",))
    firsts = [order_targets(r, hints=hints)[0].provider_name for _ in range(4)]
    assert firsts == ["a", "c", "a", "c"]


# -- skip (for the caller's circuit breaker) -----------------------------------------


def test_skipped_targets_go_to_the_end_without_being_removed():
    r = route("fallback", target("a"), target("b"), target("c"), target("d"))
    order = order_targets(r, skip=lambda t: t.provider_name in {"a", "c"})
    assert names(order) == ["b/m", "d/m", "a/m", "c/m"]


def test_a_preferred_but_skipped_target_still_goes_to_the_end():
    r = route("fallback", target("a"), target("b"), target("c"))
    hints = RoutingHints(prefer_providers=("c", "b"))
    order = order_targets(r, hints=hints, skip=lambda t: t.provider_name == "c")
    assert names(order) == ["b/m", "a/m", "c/m"]


def test_skip_is_asked_once_per_target():
    r = route("fallback", target("a"), target("b"), target("c"))
    asked: list[str] = []

    def skip(t: Target) -> bool:
        asked.append(t.provider_name)
        return t.provider_name == "a"

    order_targets(r, hints=RoutingHints(prefer_providers=("b",)), skip=skip)
    assert sorted(asked) == ["a", "b", "c"]


def test_when_every_target_is_skipped_all_are_still_returned():
    r = route("fallback", target("a"), target("b"))
    assert names(order_targets(r, skip=lambda t: True)) == ["a/m", "b/m"]


def test_a_skipped_unmeasured_target_takes_no_latency_probe():
    tracker = LatencyTracker()
    tracker.observe("fast/m", 0.1, now=0)
    r = route("latency", target("fast"), target("new"))
    order = order_targets(r, tracker=tracker, now=1, skip=lambda t: t.provider_name == "new")
    assert names(order) == ["fast/m", "new/m"]
    # Once its circuit closes it is still first in line to be measured.
    assert order_targets(r, tracker=tracker, now=2)[0].provider_name == "new"


def test_without_hints_or_skip_the_strategy_order_is_returned_as_is():
    r = route("fallback", target("a"), target("b"))
    assert names(order_targets(r, hints=NO_HINTS, skip=None)) == ["a/m", "b/m"]
