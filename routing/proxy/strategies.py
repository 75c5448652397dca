"""The order in which one request tries a route's targets.

`order_targets()` runs once per proxied request, so it stays small: no ORM, no I/O, one
short list. In order:

1. `exclude_providers` hints drop targets (a 400 `no_target_left` if none is left).
   This comes first so that the strategy works on what is left: a weighted route whose
   heaviest target is excluded splits between the others by their own weights.
2. The route's strategy orders the rest:
   - `fallback`: as configured (any unknown strategy is treated the same way);
   - `weighted`: the first target is drawn with probability weight / total weight (a
     95/5 canary), the others follow by descending weight, ties in configured order, so
     fallbacks go to the bigger share. A weight of 0 makes a standby target, tried only
     after the others; if every weight is 0 the configured order stands;
   - `round_robin`: the configured order, rotated by a per-route counter local to this
     process (each process is fair on its own, which is fair overall);
   - `latency`: ascending moving average (EWMA, alpha 0.3) of the time to first token,
     from the process-wide `latency_tracker` (see `LatencyTracker` for the treatment of
     targets without a recent sample);
   - `cost`: ascending input + output price per million tokens, ties in configured order.
3. `prefer_providers` hints move their targets to the front, in the order the client
   listed the providers; otherwise the order is kept.
4. `skip` (the caller's, for open circuits) moves targets to the end without removing
   them, preserving their relative order.
"""

from __future__ import annotations

import itertools
import random
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import TYPE_CHECKING

from gateway_project.lib import errors
from routing.proxy.hints import NO_HINTS, RoutingHints

if TYPE_CHECKING:
    from providers.base import Target
    from routing.snapshot import RouteEntry

FALLBACK = "fallback"
WEIGHTED = "weighted"
ROUND_ROBIN = "round_robin"
LATENCY = "latency"
COST = "cost"

_UNMEASURED = -1.0  # sorts before every real latency
_rng = random.Random()


class _Stat:
    __slots__ = ("ewma", "observed_at", "probed_at")

    def __init__(self) -> None:
        self.ewma: float | None = None
        self.observed_at = float("-inf")
        self.probed_at = float("-inf")


class LatencyTracker:
    """A moving average of the time to first token per target key, for this process.

    Each observation moves the average `alpha` of the way to the new value. A target
    with no sample, or whose last sample is older than `stale_after_s`, counts as
    unmeasured and is put *first*: otherwise a target that never got traffic, or one
    that was slow once and has since recovered, would never be measured again. Its next
    sample then replaces the stale average instead of blending with it.

    Putting an unmeasured target first for every request until its first answer comes
    back would send it a burst of traffic, so the request it goes first for takes a
    "probe" on it: for `probe_window_s` afterwards (or until a sample arrives) it ranks
    by its old average if it has one, and after the measured targets if it has none. A
    probe that never reports (the attempt failed) expires and another request measures.

    Updates are not locked: two threads observing the same key at once can lose one
    sample, which an average does not notice.
    """

    def __init__(
        self, *, alpha: float = 0.3, stale_after_s: float = 300.0, probe_window_s: float = 10.0
    ) -> None:
        self.alpha = alpha
        self.stale_after_s = stale_after_s
        self.probe_window_s = probe_window_s
        self._stats: dict[str, _Stat] = {}

    def observe(self, target_key: str, ttft_s: float, *, now: float | None = None) -> None:
        """Record one time to first token (seconds); `now` is `time.monotonic()`."""
        if not ttft_s >= 0:  # also refuses NaN, which would poison the average for good
            return
        now = time.monotonic() if now is None else now
        stat = self._stats.get(target_key)
        if stat is None:
            stat = self._stats.setdefault(target_key, _Stat())
        if stat.ewma is None or now - stat.observed_at > self.stale_after_s:
            stat.ewma = ttft_s
        else:
            stat.ewma += self.alpha * (ttft_s - stat.ewma)
        stat.observed_at = now

    def ewma(self, target_key: str, *, now: float | None = None) -> float | None:
        """The current average, or None when the target counts as unmeasured."""
        now = time.monotonic() if now is None else now
        stat = self._stats.get(target_key)
        if stat is None or stat.ewma is None or now - stat.observed_at > self.stale_after_s:
            return None
        return stat.ewma

    def clear(self) -> None:
        self._stats.clear()

    def rank(self, target_key: str, now: float) -> float:
        stat = self._stats.get(target_key)
        if stat is None:
            return _UNMEASURED
        if stat.ewma is not None and now - stat.observed_at <= self.stale_after_s:
            return stat.ewma
        if now - stat.probed_at < self.probe_window_s:
            return stat.ewma if stat.ewma is not None else float("inf")
        return _UNMEASURED

    def claim_probe(self, target_key: str, now: float) -> None:
        """Note that a request is about to measure this target, if it needs measuring."""
        if self.rank(target_key, now) == _UNMEASURED:
            stat = self._stats.get(target_key)
            if stat is None:
                stat = self._stats.setdefault(target_key, _Stat())
            stat.probed_at = now


latency_tracker = LatencyTracker()
_round_robin: dict[int, Iterator[int]] = {}


def reset_round_robin() -> None:
    """Forget the per-route counters (tests; a fresh process starts the same way)."""
    _round_robin.clear()


def order_targets(
    route: RouteEntry,
    *,
    hints: RoutingHints = NO_HINTS,
    now: float | None = None,
    rng: random.Random = _rng,
    skip: Callable[[Target], bool] | None = None,
    tracker: LatencyTracker = latency_tracker,
) -> list[Target]:
    """The targets of `route` in the order this request should try them.

    `now` is `time.monotonic()` (taken here when omitted); `rng` draws the weighted pick;
    `skip` is called once per target and moves those it answers True for to the end.
    Raises a 400 `GatewayError` (code `no_target_left`) when the hints exclude every target.
    """
    targets: tuple[Target, ...] | list[Target] = route.targets
    if not targets:
        return []
    if hints.exclude_providers:
        targets = _without_excluded(route, hints.exclude_providers)

    strategy = route.strategy
    if len(targets) == 1:
        ordered = list(targets)
    elif strategy == WEIGHTED:
        ordered = _weighted(targets, rng)
    elif strategy == ROUND_ROBIN:
        ordered = _rotated(route.id, targets)
    elif strategy == LATENCY:
        now = time.monotonic() if now is None else now
        ordered = _by_latency(targets, tracker, now)
    elif strategy == COST:
        ordered = sorted(targets, key=_price)
    else:
        ordered = list(targets)

    all_skipped = False
    if hints.prefer_providers or skip is not None:
        all_skipped = _reorder(ordered, hints.prefer_providers, skip)
    if strategy == LATENCY and now is not None and len(ordered) > 1 and not all_skipped:
        tracker.claim_probe(ordered[0].key, now)
    return ordered


def _without_excluded(route: RouteEntry, excluded: tuple[str, ...]) -> list[Target]:
    kept = [t for t in route.targets if t.provider_name.lower() not in excluded]
    if not kept:
        providers = ", ".join(sorted({t.provider_name for t in route.targets}))
        raise errors.bad_request(
            f"The route '{route.name}' only has targets at {providers}, and the request "
            "excludes them all: no target is left to try.",
            code="no_target_left",
        )
    return kept


def _weighted(targets: tuple[Target, ...] | list[Target], rng: random.Random) -> list[Target]:
    total = 0
    last_positive = -1
    for index, target in enumerate(targets):
        if target.weight > 0:
            total += target.weight
            last_positive = index
    if total <= 0:
        return list(targets)
    point = rng.random() * total
    chosen = last_positive  # if float rounding leaves `point` unspent
    for index, target in enumerate(targets):
        if target.weight > 0:
            point -= target.weight
            if point < 0:
                chosen = index
                break
    ordered = list(targets)
    first = ordered.pop(chosen)
    ordered.sort(key=_heaviest)
    ordered.insert(0, first)
    return ordered


def _heaviest(target: Target) -> int:
    return -target.weight


def _rotated(route_id: int, targets: tuple[Target, ...] | list[Target]) -> list[Target]:
    counter = _round_robin.get(route_id)
    if counter is None:
        counter = _round_robin.setdefault(route_id, itertools.count())
    # next() on itertools.count is atomic under the GIL: no lock, no lost turn.
    start = next(counter) % len(targets)
    return [*targets[start:], *targets[:start]]


def _by_latency(
    targets: tuple[Target, ...] | list[Target], tracker: LatencyTracker, now: float
) -> list[Target]:
    return sorted(targets, key=lambda t: tracker.rank(t.key, now))


def _price(target: Target) -> Decimal:
    return target.input_per_million + target.output_per_million


def _reorder(
    ordered: list[Target],
    prefer: tuple[str, ...],
    skip: Callable[[Target], bool] | None,
) -> bool:
    """Preferred first, skipped last, stable otherwise; True if every target is skipped."""
    behind = len(prefer) + 1
    skipped: list[Target] = []

    def rank(target: Target) -> int:
        position = behind - 1
        if prefer:
            name = target.provider_name.lower()
            if name in prefer:
                position = prefer.index(name)
        if skip is not None and skip(target):
            skipped.append(target)
            position += behind
        return position

    ordered.sort(key=rank)
    return len(skipped) == len(ordered)
