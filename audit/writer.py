"""The audit writer: rows leave the response path at once and reach the database in batches.

A request hands its finished row (an audit.row.AuditRow) to `audit_writer.record()`, which
only appends to an in-memory queue (no I/O, never a wait). A background thread drains the
queue every AUDIT_FLUSH_INTERVAL_SECONDS (or sooner, once AUDIT_BATCH_SIZE rows wait) with
one statement per batch (COPY on Postgres, bulk_create elsewhere: audit/bulk.py). A row
leaves memory only once it is settled: written, spooled to local disk, or dead-lettered.

- Every row is redacted with the rules it carries, then sanitized (audit/store.py:
  `prepare`), so what a client sent or an upstream reported cannot make the database
  refuse it.
- A batch that fails because the database is away goes back to the head of the queue and
  is retried with backoff, each of its rows looked up by request_id first; a bad row is
  isolated and dead-lettered (audit/store.py: `write_rows`).
- Past AUDIT_QUEUE_MAX queued rows a second thread, the spiller, moves the newest rows
  to a spool file: the event loop never waits, whatever the database does.
- On shutdown (ASGI lifespan, SIGTERM through the server, or interpreter exit) `close()`
  writes what it can and spills the rest to the spool.
- The writer thread replays spool files at its first run, whenever it has just spilled,
  and every SPOOL_RESCAN_SECONDS (another worker's files). A file is deleted once its
  rows are committed; a row that was already written (a retry whose first commit did get
  through, a file replayed twice) is recognised by its request_id and skipped.

What a hard kill (SIGKILL, power loss) can lose is what sits in memory: the queue (at
most one flush interval of traffic plus any backlog, capped at AUDIT_QUEUE_MAX rows) and
the batch being written. ARCHITECTURE.md states that window.
"""

from __future__ import annotations

import atexit
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from django.conf import settings
from django.db import close_old_connections, connection

from audit import spool
from audit.key_use import KeyUse
from audit.row import AuditRow
from audit.store import prepare, replay_spool_file, write_rows

logger = logging.getLogger(__name__)
SPOOL_RESCAN_SECONDS = 60.0  # how often the writer looks for spool files it did not write


class _GiveWay:
    """Called between rows: lets the event loop thread run if the writer has held the GIL
    for `every` seconds.

    The writer's batch work (redaction, encoding rows for COPY) is pure Python on a thread
    that shares the GIL with the proxy. Left alone, a thread keeps the GIL until the
    interpreter's switch interval (5 ms) forces a hand-over, so a request arriving during
    a flush could wait that long. Sleeping zero seconds releases it at once. Not after
    every row: each hand-over costs both threads CPU, and getting the GIL back can take a
    whole switch interval while the proxy is busy, which starved the writer (more CPU per
    row, and a backlog that grew under load: bench/README.md).
    """

    def __init__(self, every: float = 0.001) -> None:
        self.every = every
        self.until = time.perf_counter() + every

    def __call__(self) -> None:
        if time.perf_counter() >= self.until:
            time.sleep(0)
            self.until = time.perf_counter() + self.every


class AuditWriter:
    def __init__(self) -> None:
        self._queue: deque[AuditRow] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._spiller: threading.Thread | None = None
        self._overflow = threading.Event()  # set by record() past AUDIT_QUEUE_MAX
        self._closing = False
        self._write_lock = threading.Lock()  # one batch in flight per process
        self._in_flight: list[AuditRow] = []  # the batch being written (for a stuck shutdown)
        # When to look at the spool next (time.monotonic()); 0: at the thread's first run.
        self._spool_due = 0.0
        self._key_use = KeyUse()  # API keys' last_used_at, written at most so often
        self.written = 0
        self.failures = 0
        self.spilled = 0  # rows this process moved to the spool
        self.dead_lettered = 0  # rows this process put in the dead-letter file

    # --- the hot path ------------------------------------------------------------------------
    def record(self, row: AuditRow) -> None:
        """Queue a row; never waits (the caller is the event loop)."""
        with self._cond:
            self._queue.append(row)
            queued = len(self._queue)
            if queued >= settings.AUDIT_BATCH_SIZE:
                self._cond.notify_all()
        if settings.AUDIT_BACKGROUND_WRITER:
            self._ensure_thread()
            if queued > settings.AUDIT_QUEUE_MAX:
                self._overflow.set()

    # --- the background threads --------------------------------------------------------------
    def start(self) -> None:
        """Start the writer now (ASGI lifespan startup) rather than at the first row, so the
        spool a previous run left is replayed even before any traffic."""
        if settings.AUDIT_BACKGROUND_WRITER:
            self._ensure_thread()

    def _ensure_thread(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        with self._cond:
            if self._thread is not None and self._thread.is_alive():
                return
            self._closing = False
            self._thread = threading.Thread(target=self._run, name="audit-writer", daemon=True)
            self._thread.start()
            if self._spiller is None or not self._spiller.is_alive():
                self._spiller = threading.Thread(
                    target=self._spill_overflow, name="audit-spiller", daemon=True
                )
                self._spiller.start()

    def _run(self) -> None:
        backoff = 0.1
        due = 0.0  # when the next batch may start (time.monotonic())
        while True:
            with self._cond:
                self._wait_for_work(due)
                if self._closing:
                    break
            ok = True
            full = len(self._queue) >= settings.AUDIT_BATCH_SIZE
            if self._queue and (full or time.monotonic() >= due):
                due = time.monotonic() + settings.AUDIT_FLUSH_INTERVAL_SECONDS
                ok = self._write_batch(own_thread=True)
            if ok and time.monotonic() >= self._spool_due:
                ok = self._replay_one_spool_file()
            if ok:
                backoff = 0.1
                continue
            with self._cond:
                if not self._closing:
                    self._cond.wait(backoff)  # close() wakes it at once
            backoff = min(backoff * 2, 5.0)
        try:
            self._drain_at_shutdown()
        finally:
            connection.close()  # this thread's own connection: nobody else will close it

    def _wait_for_work(self, due: float) -> None:
        """Return (holding `_cond`) when a batch should be written: one flush interval after
        the previous batch started, or at once when a full batch waits or on shutdown; or
        when the spool is due a look.

        Not as soon as the previous batch is done: under load rows arrive while a batch is
        being written, and writing them at once made batches of a few dozen rows, each
        paying the fixed cost of a statement and a commit (the writer's CPU, held against
        the proxy's share of the GIL, and a commit for Postgres). Paced, a batch holds one
        flush interval's traffic (bench/README.md has the figures)."""
        interval = settings.AUDIT_FLUSH_INTERVAL_SECONDS
        while not self._closing and len(self._queue) < settings.AUDIT_BATCH_SIZE:
            now = time.monotonic()
            wake = min(due if self._queue else now + interval, self._spool_due)
            if wake <= now:
                return
            self._cond.wait(wake - now)

    def _spill_overflow(self) -> None:
        """The spiller thread: past AUDIT_QUEUE_MAX, move the newest rows to the spool.

        A thread of its own, not the writer's: the writer may be stuck in a connect to a
        database that does not answer, and the queue must stay bounded meanwhile."""
        while True:
            self._overflow.wait(1.0)
            self._overflow.clear()
            if self._closing:
                return
            if len(self._queue) <= settings.AUDIT_QUEUE_MAX:
                continue
            # Down to a batch below the max (or half of it), not just to the max: one
            # spill of a batch of rows, not a file and an fsync for every row past it.
            batch_size = settings.AUDIT_BATCH_SIZE
            target = max(settings.AUDIT_QUEUE_MAX - batch_size, settings.AUDIT_QUEUE_MAX // 2)
            while True:
                with self._cond:
                    count = min(len(self._queue) - target, batch_size)
                    if count <= 0:
                        break
                    rows = [self._queue.pop() for _ in range(count)]
                rows.reverse()
                if not self._spill(rows):
                    with self._cond:
                        self._queue.extend(rows)  # disk refused: keep them in memory
                    break

    def _spill(self, rows: list[AuditRow]) -> bool:
        """Move raw rows to a spool file (redacted first: unredacted text never reaches the
        disk); False, with nothing lost, if the disk refuses."""
        if not rows:
            return True
        try:
            path = spool.spill([prepare(row) for row in rows])
        except OSError:
            logger.exception("audit: %d rows could not be spooled; kept in memory", len(rows))
            return False
        self.spilled += len(rows)
        self._spool_due = time.monotonic()  # replay once the database takes rows again
        logger.warning("audit: %d rows spooled to %s", len(rows), path)
        return True

    # --- writing ---------------------------------------------------------------------------
    def _take(self) -> list[AuditRow]:
        with self._cond:
            batch: list[AuditRow] = []
            while self._queue and len(batch) < settings.AUDIT_BATCH_SIZE:
                batch.append(self._queue.popleft())
            self._cond.notify_all()
            return batch

    def _put_back(self, batch: list[AuditRow]) -> None:
        with self._cond:
            self._queue.extendleft(reversed(batch))
            if len(self._queue) > settings.AUDIT_QUEUE_MAX:
                self._overflow.set()

    def _write_batch(self, *, own_thread: bool = False) -> bool:
        """Write one batch; False (with the rows not settled re-queued) if the database is
        away."""
        with self._write_lock:
            batch = self._take()
            if not batch:
                return True
            self._in_flight = batch
            try:
                return self._write_taken(batch, own_thread=own_thread)
            except BaseException as exc:
                # Nothing below should raise; if it does, the batch is not lost for it.
                logger.exception("audit writer failed; %d rows re-queued", len(batch))
                self._put_back(batch)
                if not isinstance(exc, Exception):
                    raise
                return False
            finally:
                self._in_flight = []

    def _write_taken(self, batch: list[AuditRow], *, own_thread: bool) -> bool:
        if own_thread:
            # The writer thread's connection may have gone stale between batches; a
            # caller's connection (tests, shutdown) is the caller's business.
            close_old_connections()
        between_rows = _GiveWay() if own_thread else None
        rows = self._prepare_batch(batch, between_rows)
        settled = write_rows(
            rows, check_existing=[row.unsure for row in batch], between_rows=between_rows
        )
        self.dead_lettered += settled.dead_lettered
        if settled.count < len(batch):
            self._requeue_unsettled(batch[settled.count :], own_thread=own_thread)
            return False
        self._key_use.record(rows)
        self.written += settled.written
        return True

    @staticmethod
    def _prepare_batch(
        batch: list[AuditRow], between_rows: Callable[[], None] | None
    ) -> list[dict]:
        rows = []
        for row in batch:
            rows.append(prepare(row))
            if between_rows is not None:
                between_rows()
        return rows

    def _requeue_unsettled(self, rest: list[AuditRow], *, own_thread: bool) -> None:
        """Put back the rows an outage left unsettled, at the head of the queue."""
        self.failures += 1
        for row in rest:
            # This attempt may have committed without our hearing of it: look the row up
            # before writing it again.
            row.unsure = True
        self._put_back(rest)
        if own_thread:
            close_old_connections()

    def _replay_one_spool_file(self) -> bool:
        """Write the oldest spool file no other process holds; False if the database is away
        (the file stays)."""
        with self._write_lock:
            try:
                return self._replay_spool(spool.spool_files())
            except Exception:
                # A file it cannot read must not stop the writer; it stays for the command.
                logger.exception("audit: spool replay failed")
                self._spool_due = time.monotonic() + SPOOL_RESCAN_SECONDS
                return True

    def _replay_spool(self, files: list[Path]) -> bool:
        for path in files:
            close_old_connections()
            settled = replay_spool_file(path)
            if settled is None:
                continue  # another worker is on it
            self.written += settled.written
            self.dead_lettered += settled.dead_lettered
            if settled.outage:
                self.failures += 1
                self._spool_due = time.monotonic() + 5.0
                close_old_connections()
                return False
            logger.info("audit: replayed spool file %s (%s)", path.name, settled)
            self._spool_due = time.monotonic()  # the next file, between batches
            return True
        self._spool_due = time.monotonic() + SPOOL_RESCAN_SECONDS
        return True

    def _drain_at_shutdown(self) -> None:
        """The writer thread's last work: write what it can, spill the rest at the first
        failure (the database being away at shutdown must not cost the rows)."""
        while self._queue:
            if not self._write_batch(own_thread=True):
                break
        self._spill_queue()

    def _spill_queue(self, extra: list[AuditRow] | None = None) -> None:
        with self._cond:
            rows = [*(extra or []), *self._queue]
            self._queue.clear()
        if rows and not self._spill(rows):
            with self._cond:
                self._queue.extendleft(reversed(rows))
            logger.error("audit rows left unwritten at shutdown: %d", len(rows))

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
        """Stop the threads once every queued row is written or spooled (shutdown path)."""
        thread = self._thread
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._overflow.set()
        if thread is not None and thread.is_alive():
            thread.join(timeout)
        if self._spiller is not None and self._spiller.is_alive():
            self._spiller.join(timeout)
        if thread is not None and thread.is_alive():
            # Stuck in a statement or a connect that never answers: spill what it holds
            # too. Should that statement commit after all, the replay finds the rows by
            # request_id and skips them.
            logger.error("audit writer did not stop in %.0f s; spooling its rows", timeout)
            self._spill_queue(extra=list(self._in_flight))
            return
        while self._queue:
            try:
                if not self._write_batch():
                    break
            except Exception:
                logger.exception("audit rows could not be written at shutdown")
                break
        self._spill_queue()

    async def aclose(self) -> None:
        import asyncio

        await asyncio.to_thread(self.close)


audit_writer = AuditWriter()
atexit.register(audit_writer.close)
