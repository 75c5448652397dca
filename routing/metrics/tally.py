"""What requests added to the metrics since the last write, kept in this process's memory
and written to the shared files in batches.

Writing a value to prometheus-client's multiprocess files takes a lock, a getpid() system
call and a write into the file's memory map: about 1 us, and a histogram observation two
of them, so a request's dozen values cost 20-50 us. Added up here instead (a dictionary
update each, under one lock per request), they reach the files once a second from the
background thread (routing/metrics/background.py), as one write per series however many
requests it saw; also before this worker answers a scrape, and when it shuts down. A
worker that is killed loses at most that second of counts.

Histograms are added up by bucket: prometheus-client has no way to observe many values at
once, so the flush adds to the histogram child's own bucket and sum values (the version is
pinned in pyproject.toml; tests/routing/metrics check the result against `observe()`).
"""

from __future__ import annotations

import bisect
import threading
from typing import Any


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        # One flush at a time, so that a flush returns only once everything tallied before
        # it is in the files, even what another thread's flush had taken.
        self._writing = threading.Lock()
        self._added: dict[Any, float] = {}  # counter child -> amount
        self._observed: dict[Any, list[float]] = {}  # histogram child -> [sum, per bucket...]

    def add(self, child: Any, amount: float = 1.0) -> None:
        """Count `amount` on a counter child (the caller holds `lock`)."""
        added = self._added
        added[child] = added.get(child, 0.0) + amount

    def observe(self, child: Any, bounds: tuple[float, ...], value: float) -> None:
        """Observe `value` on a histogram child whose upper bounds (+Inf last) are `bounds`
        (the caller holds `lock`)."""
        observed = self._observed.get(child)
        if observed is None:
            observed = self._observed[child] = [0.0] * (len(bounds) + 1)
        observed[0] += value
        # The first bound at or above the value, as Histogram.observe() picks it.
        observed[1 + bisect.bisect_left(bounds, value)] += 1

    def flush(self) -> None:
        """Write what was added since the last flush to the metric files."""
        with self._writing:
            with self.lock:  # held by requests only while they add: a moment
                added, self._added = self._added, {}
                observed, self._observed = self._observed, {}
            for child, amount in added.items():
                child.inc(amount)
            for child, (total, *per_bucket) in observed.items():
                child._sum.inc(total)
                for bucket, count in zip(child._buckets, per_bucket, strict=True):
                    if count:
                        bucket.inc(count)


tally = Tally()
