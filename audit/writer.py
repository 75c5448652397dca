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
from datetime import datetime

from django.conf import settings
from django.db import close_old_connections

logger = logging.getLogger(__name__)


class AuditWriter:
    def __init__(self) -> None:
        self._queue: deque[dict] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closing = False
        self._write_lock = threading.Lock()  # one batch in flight per process
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
        while True:
            with self._cond:
                if not self._queue and not self._closing:
                    self._cond.wait(settings.AUDIT_FLUSH_INTERVAL_SECONDS)
                if self._closing and not self._queue:
                    return
            if not self._write_batch():
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                if self._closing and self.failures > 50:
                    logger.error("audit writer giving up at shutdown; %d rows unwritten",
                                 len(self._queue))
                    return
            else:
                backoff = 0.1

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

    def _write_batch(self) -> bool:
        """Write one batch; False (with the batch re-queued) if the database refused it."""
        from audit.models import AuditEvent
        from tenants.services import api_keys_touch

        with self._write_lock:
            batch = self._take()
            if not batch:
                return True
            close_old_connections()
            try:
                last_used: dict[int, datetime] = {}
                events = []
                for row in batch:
                    fields = dict(row)
                    key_id = fields.pop("api_key_id", None)
                    if key_id is not None:
                        last_used[key_id] = max(fields["created_at"], last_used.get(key_id, fields["created_at"]))
                    events.append(AuditEvent(**fields))
                AuditEvent.objects.bulk_create(events)
                if last_used:
                    api_keys_touch(last_used=last_used)
            except Exception:
                self.failures += 1
                logger.exception("audit batch of %d rows failed; will retry", len(batch))
                self._put_back(batch)
                close_old_connections()
                return False
            self.written += len(batch)
            return True

    def flush(self) -> None:
        """Write everything queued now, in the calling thread."""
        while self._queue:
            if not self._write_batch():
                raise RuntimeError("audit rows could not be written")

    def pending(self) -> int:
        return len(self._queue)

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
