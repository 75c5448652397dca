"""The tally adds up what requests record and writes it in one go: the files must end up
exactly as if every value had been written at once (prometheus-client's own observe())."""

from __future__ import annotations

import math

from prometheus_client import Counter, Histogram

from routing.metrics import instruments
from routing.metrics.tally import Tally
from tests.routing.metrics.support import read

BUCKETS = instruments.TTFT_BUCKETS
# On a bound, between bounds, below the first, past the last (+Inf), and repeated.
VALUES = [0.001, 0.0005, 0.03, 0.1, 0.1, 7.5, 12.0, 0.04, 0.2, 1e9]


def test_batched_observations_land_in_the_same_buckets_as_observe():
    direct = Histogram("test_tally_direct", "observed one by one", ["k"], buckets=BUCKETS)
    batched = Histogram("test_tally_batched", "tallied", ["k"], buckets=BUCKETS)
    tally = Tally()
    child = batched.labels("v")
    for value in VALUES:
        direct.labels("v").observe(value)
        with tally.lock:
            tally.observe(child, (*BUCKETS, math.inf), value)
    assert read()['test_tally_batched_count{k="v"}'] == 0  # not written yet

    tally.flush()

    values = read()
    direct_samples = {n: v for n, v in values.items() if n.startswith("test_tally_direct")}
    assert direct_samples == {'test_tally_direct_count{k="v"}': len(VALUES)}
    assert values['test_tally_batched_count{k="v"}'] == len(VALUES)
    assert child._sum.get() == direct.labels("v")._sum.get() == sum(VALUES)
    assert [b.get() for b in child._buckets] == [b.get() for b in direct.labels("v")._buckets]
    assert child._upper_bounds == [*BUCKETS, math.inf]


def test_counts_are_added_up_and_written_once():
    counter = Counter("test_tally_counter", "tallied", ["k"])
    tally = Tally()
    with tally.lock:
        for amount in (1, 2.5, 3):
            tally.add(counter.labels("v"), amount)
    tally.flush()
    tally.flush()  # nothing more to write
    assert read()['test_tally_counter_total{k="v"}'] == 6.5
