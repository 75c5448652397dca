"""The audit writer: rows leave the response path at once and reach the database in batches.

A request hands its finished row to `audit_writer.record()`, which only appends to an
in-memory queue (no I/O). A background thread drains the queue every
AUDIT_FLUSH_INTERVAL_SECONDS (or sooner, once AUDIT_BATCH_SIZE rows wait) with one
multi-row INSERT per batch. Nothing is dropped:

- a failed INSERT puts the batch back at the head of the queue and retries with backoff
  (the database being down delays rows, it does not lose them);
- past AUDIT_QUEUE_MAX queued rows, `record()` waits for room: the gateway slows down
  rather than forget what it served;
- on shutdown (ASGI lifespan, SIGTERM through the server, or interpreter exit) `close()`
  writes everything still queued.

What a hard kill (SIGKILL, power loss) can lose is what sits in the queue: at most one
flush interval of traffic. ARCHITECTURE.md states that window.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from datetime import datetime, timedelta
from pathlib import Path

import orjson
from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
)

logger = logging.getLogger(__name__)
_TOUCHED_MAX = 100_000  # keys whose last write time the writer remembers


def _redacted(row: dict) -> dict:
    """Apply the redaction rules in force for the request (done here, off the response path)."""
    fields = dict(row)
    redactor = fields.pop("_redactor", None)
    # Every free-text column, not just prompt and response; what fails is withheld.
    return fields if redactor is None else redactor.audit_row(fields)


class _GiveWay:
    """Called between rows: lets the event loop thread run if the writer has held the GIL
    for `every` seconds.

    The writer's batch work (redaction, encoding rows for COPY) is pure Python on a thread
    that shares the GIL with the proxy. Left alone, a thread keeps the GIL until the
    interpreter's switch interval (5 ms) forces a hand-over, so a request arriving during
    a flush could wait that long. Sleeping zero seconds releases it at once. Not after
    every row: each hand-over costs both threads CPU, and getting the GIL back can take a
    whole switch interval while the proxy is busy, which starved the writer (measured:
    3x the CPU per row, and a backlog that grew under load).
    """

    def __init__(self, every: float = 0.001) -> None:
        self.every = every
        self.until = time.perf_counter() + every

    def __call__(self) -> None:
        if time.perf_counter() >= self.until:
            time.sleep(0)
            self.until = time.perf_counter() + self.every


def _dead_letter(fields: dict) -> None:
    """Keep a row the database refuses (bad data, not an outage) in a file, never drop it."""
    path = Path(settings.STATE_DIR) / "audit-dead-letter.jsonl"
    with path.open("ab") as handle:
        handle.write(orjson.dumps(fields, default=str) + b"\n")


class AuditWriter:
    def __init__(self) -> None:
        self._queue: deque[dict] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._write_lock = threading.Lock()  # one batch in flight per process
        # When each key's last_used_at was last written: a busy key is written at most once
        # per AUDIT_KEY_TOUCH_SECONDS, not once per batch.
        self._touched: dict[int, datetime] = {}
        self.written = 0
        self.failures = 0

    # --- the hot path ------------------------------------------------------------------------
    def record(self, row: dict) -> None:
        with self._cond:
            while len(self._queue) >= settings.AUDIT_QUEUE_MAX and self._background_running():
                self._cond.wait(0.05)
            self._queue.append(row)
            if len(self._queue) >= settings.AUDIT_BATCH_SIZE:
                self._cond.notify_all()
        if settings.AUDIT_BACKGROUND_WRITER:
            self._ensure_thread()

    # --- the background thread -----------------------------------------------------------------
    def _background_running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._closing = False
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        backoff = 0.1
        due = 0.0  # when the next batch may start (time.monotonic())
        while True:
            with self._cond:
                self._wait_for_batch(due)
                if self._closing and not self._queue:
                    return
            due = time.monotonic() + settings.AUDIT_FLUSH_INTERVAL_SECONDS
            if not self._write_batch(own_thread=True):
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                if self._closing and self.failures > 50:
                    logger.error(
                        "audit writer giving up at shutdown; %d rows unwritten", len(self._queue)
                    )
                    return
            else:
                backoff = 0.1

    def _wait_for_batch(self, due: float) -> None:
        """Return (holding `_cond`) when a batch should be written: one flush interval after
        the previous batch started, or at once when a full batch waits or on shutdown.

        Not as soon as the previous batch is done: under load rows arrive while a batch is
        being written, and writing them at once made batches of a few dozen rows, each
        paying the fixed cost of a statement and a commit (about 0.3 ms of the writer's
        CPU, held against the proxy's share of the GIL, and a commit for Postgres). Paced,
        a batch holds an interval's traffic: at 1,000 requests a second, 200 rows."""
        interval = settings.AUDIT_FLUSH_INTERVAL_SECONDS
        while not self._closing and len(self._queue) < settings.AUDIT_BATCH_SIZE:
            wait = due - time.monotonic() if self._queue else interval
            if wait <= 0:
                return
            self._cond.wait(wait)

    # --- writing ---------------------------------------------------------------------------
    def _take(self) -> list[dict]:
        with self._cond:
            batch = []
            while self._queue and len(batch) < settings.AUDIT_BATCH_SIZE:
                batch.append(self._queue.popleft())
            self._cond.notify_all()
            return batch

    def _put_back(self, batch: list[dict]) -> None:
        with self._cond:
            self._queue.extendleft(reversed(batch))

    def _write_batch(self, *, own_thread: bool = False) -> bool:
        """Write one batch; False (with the batch re-queued) if the database refused it."""
        from audit.bulk import insert_rows
        from audit.models import AuditEvent

        with self._write_lock:
            batch = self._take()
            if not batch:
                return True
            if own_thread:
                # The writer thread's connection may have gone stale between batches; a
                # caller's connection (tests, shutdown) is the caller's business.
                close_old_connections()
            last_used: dict[int, datetime] = {}
            rows = []
            between_rows = _GiveWay() if own_thread else None
            for row in batch:
                fields = _redacted(row)
                key_id = fields.get("api_key_id")
                if key_id is not None:
                    when = fields["created_at"]
                    last_used[key_id] = max(when, last_used.get(key_id, when))
                rows.append(fields)
                if between_rows is not None:
                    between_rows()
            try:
                insert_rows(rows, between_rows=between_rows)
            except (OperationalError, InterfaceError):
                # The database is away: keep the batch and retry, in order.
                self.failures += 1
                logger.exception("audit batch of %d rows failed; will retry", len(batch))
                self._put_back(batch)
                if own_thread:
                    close_old_connections()
                return False
            except DatabaseError:
                # One bad row must not block the rest: write them one by one.
                logger.exception("audit batch refused; isolating the bad rows")
                if own_thread:
                    close_old_connections()
                for index, fields in enumerate(rows):
                    try:
                        AuditEvent.objects.create(**fields)
                    except (OperationalError, InterfaceError):
                        self._put_back(batch[index:])
                        if own_thread:
                            close_old_connections()
                        return False
                    except IntegrityError:
                        # Most likely the tenant or key was deleted while the row waited:
                        # keep the row, with its slug and key prefix, minus the links.
                        fields = {**fields, "tenant_id": None, "api_key_id": None}
                        try:
                            AuditEvent.objects.create(**fields)
                        except DatabaseError:
                            logger.exception("audit row %s refused", fields.get("request_id"))
                            _dead_letter(fields)
                    except DatabaseError:
                        logger.exception("audit row %s refused", fields.get("request_id"))
                        _dead_letter(fields)
            self._touch_keys(last_used)
            self.written += len(batch)
            return True

    def _touch_keys(self, last_used: dict[int, datetime]) -> None:
        from tenants.services import api_keys_touch

        every = timedelta(seconds=settings.AUDIT_KEY_TOUCH_SECONDS)
        due = {
            key_id: when
            for key_id, when in last_used.items()
            if key_id not in self._touched or when - self._touched[key_id] >= every
        }
        if not due:
            return
        try:
            api_keys_touch(last_used=due)
        except DatabaseError:
            logger.warning("could not record key last-use times", exc_info=True)
            return
        if len(self._touched) > _TOUCHED_MAX:
            self._touched.clear()  # forgetting costs one early write per key, nothing more
        self._touched.update(due)

    def flush(self) -> None:
        """Write everything queued now, in the calling thread."""
        while self._queue:
            if not self._write_batch():
                raise RuntimeError("audit rows could not be written")

    def pending(self) -> int:
        return len(self._queue)

    def discard(self) -> None:
        """Forget queued rows (tests only: rows of a finished test point at deleted data)."""
        with self._cond:
            self._queue.clear()

    def close(self, timeout: float = 30.0) -> None:
        """Stop the thread after it has written every queued row (shutdown path)."""
        thread = self._thread
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        if self._queue:
            try:
                self.flush()
            except Exception:
                logger.exception("audit rows left unwritten at shutdown: %d", len(self._queue))

    async def aclose(self) -> None:
        import asyncio

        await asyncio.to_thread(self.close)


audit_writer = AuditWriter()
atexit.register(audit_writer.close)
