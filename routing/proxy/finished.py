"""What watches a request end: one call per finished request, with its audit row.

The row still holds the unredacted prompt and response (the writer thread redacts them):
a watcher reads only counts, names and timings from it, never the text.
"""

from __future__ import annotations

from audit.row import AuditRow
from routing.live.feed import live_feed
from routing.metrics import recording as metrics


def request_finished(row: AuditRow) -> None:
    """Called once per request, on the response path: each watcher must be cheap and must
    never raise (a failure here would cost the caller its answer)."""
    metrics.record(row)
    if live_feed.active:  # the live traffic page: only this test while nobody watches
        live_feed.offer(row)
