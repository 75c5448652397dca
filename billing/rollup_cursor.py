"""How far the incremental roll-up has read the ledger, without missing a line that
commits after lines with higher ids.

Ledger ids come from a sequence, handed out when a writer inserts, not when it commits: a
batch that takes its ids first and commits last leaves, for a while, a hole below lines
already visible. A cursor moved to the highest id seen would step over that hole for
good. And a hole may also be for good (an insert that rolled back, or a conflict on
request_id, still spends its id), so waiting for holes to fill cannot work either.

So the cursor lags: each run reads every line above the cursor `RollupCursor("ledger")`,
rebuilds their days (rebuilding a day twice is harmless: it is idempotent), and then moves
the cursor only up to the highest id an earlier run saw (`RollupCursor("ledger-seen")`),
once that id is old enough that nothing below it can still be in flight:
- BILLING_ROLLUP_SETTLE_SECONDS have passed since it was seen (on SQLite, where one writer
  at a time takes ids and commits, that alone is exact), and
- on Postgres, no other transaction that has written anything is still open since
  before it was seen (pg_stat_activity): such a transaction may hold lower ids.
Each run thus reads the lines of one run back again; lines are read by id range (the
primary key), which costs little beside the rebuilds the new lines need anyway.

Runs are serialized by a lock on the cursor row (select_for_update; SQLite's writer lock
does it there), so two concurrent runs rebuild each day in turn, not over each other.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from billing.models import RollupCursor, UsageLine

CURSOR = "ledger"
SEEN = "ledger-seen"


@dataclass
class PendingWindow:
    first_id: int  # lines above it are read (the cursor)
    last_id: int  # up to this one: the highest committed when the run started
    cursor_after: int = 0  # where the cursor stands once the run is over


def _older_transactions_open(since: datetime) -> bool:
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND pid <> pg_backend_pid() AND backend_xid IS NOT NULL AND xact_start < %s "
            "LIMIT 1",
            [since],
        )
        return cursor.fetchone() is not None


def _advance(cursor: RollupCursor, seen: RollupCursor, last_id: int) -> None:
    settled_before = timezone.now() - timedelta(seconds=settings.BILLING_ROLLUP_SETTLE_SECONDS)
    if (
        seen.last_line_id > cursor.last_line_id
        and seen.updated_at <= settled_before
        and not _older_transactions_open(seen.updated_at)
    ):
        cursor.last_line_id = seen.last_line_id
        cursor.save(update_fields=["last_line_id", "updated_at"])
    # A new mark only once the last one is passed: moved on every run, under steady
    # traffic it would never be old enough.
    if seen.last_line_id <= cursor.last_line_id and last_id > seen.last_line_id:
        seen.last_line_id = last_id
        seen.save(update_fields=["last_line_id", "updated_at"])


@contextmanager
def pending_window() -> Iterator[PendingWindow]:
    """The ids to read, inside a transaction that holds the cursor; the cursor moves when
    the block ends without an exception."""
    for name in (CURSOR, SEEN):
        RollupCursor.objects.get_or_create(name=name)
    with transaction.atomic():
        rows = {
            row.name: row
            for row in RollupCursor.objects.select_for_update()
            .filter(name__in=(CURSOR, SEEN))
            .order_by("name")
        }
        cursor, seen = rows[CURSOR], rows[SEEN]
        last_id = UsageLine.objects.aggregate(last=Max("id"))["last"] or 0
        window = PendingWindow(first_id=cursor.last_line_id, last_id=last_id)
        yield window
        _advance(cursor, seen, last_id)
        window.cursor_after = cursor.last_line_id
