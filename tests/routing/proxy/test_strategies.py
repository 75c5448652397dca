"""The route strategies of routing/proxy/strategies.py: fallback, weighted, round-robin,
latency, cost."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from routing.proxy.strategies import (
    LatencyTracker,
    latency_tracker,
    order_targets,
    reset_round_robin,
)
from routing.snapshot import RouteEntry
from tests.routing.proxy.strategy_support import (
    binomial_interval,
    canary_route,
    names,
    route,
    target,
)


@pytest.fixture(autouse=True)
def _fresh_counters():
    reset_round_robin()
    latency_tracker.clear()
    yield
    reset_round_robin()
    latency_tracker.clear()


# -- fallback ------------------------------------------------------------------------


def test_fallback_keeps_the_configured_order():
    r = route("fallback", target("a"), target("b"), target("c"))
    assert names(order_targets(r)) == ["a/m", "b/m", "c/m"]


def test_an_unknown_strategy_is_treated_as_fallback():
    r = route("mystery", target("a"), target("b"))
    assert names(order_targets(r)) == ["a/m", "b/m"]


def test_a_route_without_targets_gives_an_empty_order():
    assert order_targets(route("weighted")) == []


def test_every_call_returns_a_fresh_list_the_caller_may_change():
    r = route("fallback", target("a"), target("b"))
    first = order_targets(r)
    first.clear()
    assert names(order_targets(r)) == ["a/m", "b/m"]


# -- weighted ------------------------------------------------------------------------


def canary_firsts(r: RouteEntry, rng: random.Random, requests: int = 1000) -> int:
    return sum(order_targets(r, rng=rng)[0].provider_name == "canary" for _ in range(requests))


def test_a_95_5_split_sends_about_5_percent_of_1000_requests_to_the_canary():
    low, high = binomial_interval(1000, 0.05, 0.999)
    assert (low, high) == (29, 74)  # mean 50, sd 6.9
    assert low <= canary_firsts(canary_route(), random.Random(20240601)) <= high


@pytest.mark.parametrize("seed", [0, 1, 2, 3, 4, 42, 1234])
def test_the_95_5_split_holds_within_the_binomial_bound_for_several_seeds(seed):
    low, high = binomial_interval(1000, 0.05, 0.999)
    assert low <= canary_firsts(canary_route(), random.Random(seed)) <= high


def test_the_same_seed_gives_the_same_sequence_of_picks():
    r = canary_route()
    one = [names(order_targets(r, rng=random.Random(7))) for _ in range(3)]
    two = [names(order_targets(r, rng=random.Random(7))) for _ in range(3)]
    assert one == two


def test_after_the_weighted_pick_the_others_follow_by_weight_without_repeats():
    r = route(
        "weighted",
        target("small", weight=1),
        target("big", weight=6),
        target("mid", weight=3),
        target("mid2", weight=3),
    )
    rng = random.Random(3)
    seen_first = Counter()
    for _ in range(400):
        order = [t.provider_name for t in order_targets(r, rng=rng)]
        assert sorted(order) == ["big", "mid", "mid2", "small"]
        seen_first[order[0]] += 1
        rest = [name for name in ["big", "mid", "mid2", "small"] if name != order[0]]
        assert order[1:] == rest  # by descending weight, ties in configured order
    assert set(seen_first) == {"small", "big", "mid", "mid2"}


def test_a_zero_weight_target_is_only_a_standby():
    r = route("weighted", target("standby", weight=0), target("a", weight=1), target("b", weight=1))
    rng = random.Random(5)
    for _ in range(300):
        order = order_targets(r, rng=rng)
        assert order[0].provider_name != "standby"
        assert order[-1].provider_name == "standby"


def test_when_every_weight_is_zero_the_configured_order_stands():
    r = route("weighted", target("a", weight=0), target("b", weight=0))
    assert names(order_targets(r, rng=random.Random(1))) == ["a/m", "b/m"]


# -- round robin ---------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 5])
def test_round_robin_gives_every_target_each_position_equally_often(n):
    k = 40
    r = route("round_robin", *(target(f"p{i}") for i in range(n)))
    positions = [Counter() for _ in range(n)]
    for _ in range(n * k):
        for position, t in enumerate(order_targets(r)):
            positions[position][t.provider_name] += 1
    for counts in positions:
        assert counts == {f"p{i}": k for i in range(n)}


def test_round_robin_rotates_the_starting_target_and_keeps_the_cycle():
    r = route("round_robin", target("a"), target("b"), target("c"))
    orders = [names(order_targets(r)) for _ in range(4)]
    assert orders == [
        ["a/m", "b/m", "c/m"],
        ["b/m", "c/m", "a/m"],
        ["c/m", "a/m", "b/m"],
        ["a/m", "b/m", "c/m"],
    ]


def test_each_route_has_its_own_round_robin_counter():
    one = route("round_robin", target("a"), target("b"))
    two = route("round_robin", target("a"), target("b"))
    assert order_targets(one)[0].provider_name == "a"
    assert order_targets(one)[0].provider_name == "b"
    assert order_targets(two)[0].provider_name == "a"


# -- latency -------------------------------------------------------------------------


def latency_route() -> RouteEntry:
    return route("latency", target("slow"), target("fast"))


def test_the_moving_average_moves_30_percent_towards_each_sample():
    tracker = LatencyTracker()
    tracker.observe("a/m", 1.0, now=0)
    tracker.observe("a/m", 2.0, now=1)
    assert tracker.ewma("a/m", now=1) == pytest.approx(1.3)
    tracker.observe("a/m", 0.0, now=2)
    assert tracker.ewma("a/m", now=2) == pytest.approx(0.91)


def test_latency_routing_picks_the_target_with_the_lower_average():
    tracker = LatencyTracker()
    for second in range(5):
        tracker.observe("slow/m", 2.0, now=second)
        tracker.observe("fast/m", 0.4, now=second)
    order = order_targets(latency_route(), tracker=tracker, now=10)
    assert names(order) == ["fast/m", "slow/m"]


def test_latency_routing_adapts_when_the_fast_target_slows_down():
    tracker = LatencyTracker()
    r = latency_route()
    tracker.observe("slow/m", 1.0, now=0)
    tracker.observe("fast/m", 0.2, now=0)
    assert order_targets(r, tracker=tracker, now=1)[0].provider_name == "fast"
    # One 1.5 s sample is not enough to outweigh the history (0.2 -> 0.59)...
    tracker.observe("fast/m", 1.5, now=2)
    assert order_targets(r, tracker=tracker, now=3)[0].provider_name == "fast"
    # ...a sustained slowdown is (0.59 -> 0.86 -> 1.05).
    tracker.observe("fast/m", 1.5, now=4)
    tracker.observe("fast/m", 1.5, now=5)
    assert order_targets(r, tracker=tracker, now=6)[0].provider_name == "slow"


def test_a_target_without_samples_goes_first_so_it_gets_measured():
    tracker = LatencyTracker()
    tracker.observe("fast/m", 0.1, now=0)
    r = route("latency", target("fast"), target("new"))
    assert names(order_targets(r, tracker=tracker, now=1)) == ["new/m", "fast/m"]


def test_an_unmeasured_target_is_probed_by_one_request_not_a_burst():
    tracker = LatencyTracker(probe_window_s=10)
    tracker.observe("fast/m", 0.1, now=0)
    r = route("latency", target("fast"), target("new"))
    assert order_targets(r, tracker=tracker, now=1)[0].provider_name == "new"
    # While that probe is out, others go to the measured target.
    assert names(order_targets(r, tracker=tracker, now=2)) == ["fast/m", "new/m"]
    # A probe that never reported (the attempt failed) expires and is retried.
    assert order_targets(r, tracker=tracker, now=12)[0].provider_name == "new"


def test_a_cold_route_spreads_its_first_probes_over_the_targets():
    tracker = LatencyTracker()
    r = route("latency", target("a"), target("b"), target("c"))
    firsts = [order_targets(r, tracker=tracker, now=0)[0].provider_name for _ in range(4)]
    assert firsts == ["a", "b", "c", "a"]


def test_a_stale_average_is_measured_again_and_replaced_by_the_next_sample():
    tracker = LatencyTracker(stale_after_s=300)
    r = latency_route()
    tracker.observe("slow/m", 5.0, now=0)
    for second in range(0, 400, 10):
        tracker.observe("fast/m", 1.0, now=second)
    # Five minutes without a sample: the slow target may have recovered; measure it.
    assert order_targets(r, tracker=tracker, now=400)[0].provider_name == "slow"
    tracker.observe("slow/m", 0.3, now=401)
    assert tracker.ewma("slow/m", now=401) == 0.3  # not blended with the stale 5.0
    assert order_targets(r, tracker=tracker, now=402)[0].provider_name == "slow"


def test_nonsense_latency_samples_are_ignored():
    tracker = LatencyTracker()
    tracker.observe("a/m", 1.0, now=0)
    tracker.observe("a/m", float("nan"), now=1)
    tracker.observe("a/m", -3.0, now=1)
    assert tracker.ewma("a/m", now=1) == 1.0


def test_latency_routing_uses_the_process_wide_tracker_by_default():
    latency_tracker.observe("slow/m", 3.0)
    latency_tracker.observe("fast/m", 0.3)
    assert order_targets(latency_route())[0].provider_name == "fast"


# -- cost ----------------------------------------------------------------------------


def test_cost_routing_puts_the_cheapest_target_first():
    r = route(
        "cost",
        target("pricey", input="10", output="30"),
        target("cheap", input="0.15", output="0.60"),
        target("middle", input="2.5", output="10"),
    )
    assert [t.provider_name for t in order_targets(r)] == ["cheap", "middle", "pricey"]


def test_cost_routing_adds_input_and_output_prices():
    r = route(
        "cost",
        target("cheap_in", input="0.10", output="20"),
        target("balanced", input="3", output="3"),
    )
    assert order_targets(r)[0].provider_name == "balanced"


def test_cost_ties_keep_the_configured_order():
    r = route("cost", target("b", input="1", output="2"), target("a", input="2", output="1"))
    assert [t.provider_name for t in order_targets(r)] == ["b", "a"]
