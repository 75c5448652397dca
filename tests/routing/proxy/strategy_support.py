"""Targets and routes for the target-ordering tests."""

from __future__ import annotations

import itertools
import math
from decimal import Decimal

from providers.base import Target
from routing.snapshot import RouteEntry

_route_ids = itertools.count(1)


def target(
    provider: str, model: str = "m", *, weight: int = 1, input: str = "1", output: str = "1"
) -> Target:
    return Target(
        provider_id=0,
        provider_name=provider,
        kind="stub",
        base_url="",
        api_key_env="",
        model=model,
        input_per_million=Decimal(input),
        output_per_million=Decimal(output),
        weight=weight,
    )


def route(strategy: str, *targets: Target) -> RouteEntry:
    return RouteEntry(
        id=next(_route_ids), name="r", tenant_id=None, strategy=strategy, targets=targets
    )


def names(targets: list[Target]) -> list[str]:
    return [t.key for t in targets]


def binomial_interval(n: int, p: float, confidence: float) -> tuple[int, int]:
    """The central interval holding `confidence` of Binomial(n, p), exactly."""
    tail = (1 - confidence) / 2
    low, high, cumulative = None, n, 0.0
    for k in range(n + 1):
        cumulative += math.comb(n, k) * p**k * (1 - p) ** (n - k)
        if low is None and cumulative > tail:
            low = k
        if cumulative >= 1 - tail:
            high = k
            break
    assert low is not None
    return low, high


def canary_route() -> RouteEntry:
    return route("weighted", target("stable", weight=95), target("canary", weight=5))
