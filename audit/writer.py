"""The audit writer: rows leave the response path at once and reach the database in batches.

A request hands its finished row to `audit_writer.record()`, which only appends to an
in-memory queue (no I/O, never a wait). A background thread drains the queue every
AUDIT_FLUSH_INTERVAL_SECONDS (or sooner, once AUDIT_BATCH_SIZE rows wait) with one
multi-row INSERT per batch. A row leaves memory only once it is settled: written,
spooled to local disk, or dead-lettered.

- Every row is redacted, then sanitized (audit/sanitize.py: NUL, lengths, ranges,
  nesting), so what a client sent or an upstream reported cannot make the database
  refuse it.
- A batch that fails because the database is away (a connection error, not the data)
  goes back to the head of the queue and is retried with backoff. Any other failure,
  whatever its exception, is a bad row: the batch is written row by row, and a row that
  still fails alone (re-sanitized, and without its tenant/key links if those are gone)
  goes to the dead-letter file (audit/spool.py), replayable with
  `manage.py audit_replay_dead_letters`.
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
import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.db import (
    DatabaseError,
    IntegrityError,
    InterfaceError,
    OperationalError,
    close_old_connections,
    connection,
    transaction,
)

from audit import spool
from audit.sanitize import sanitize_row

logger = logging.getLogger(__name__)
_TOUCHED_MAX = 100_000  # keys whose last write time the writer remembers
SPOOL_RESCAN_SECONDS = 60.0  # how often the writer looks for spool files it did not write
# SQLSTATE classes that mean the database is unavailable for now (connection exception,
# insufficient resources, operator intervention, system error, object in use) or that the
# same statement may succeed if retried (transaction rollback: serialization, deadlock).
_RETRYABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})


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


def is_outage(exc: BaseException) -> bool:
    """Whether `exc` says the database is unavailable (retry the rows later) rather than
    that it refused these rows (isolate them).

    Not "any OperationalError": psycopg files some refusals of the data there too (class
    54, e.g. a value nested deeper than Postgres's stack allows), and retrying those for
    ever would hold up every row behind them. With no SQLSTATE the server never answered:
    the connection failed.
    """
    if isinstance(exc, InterfaceError):
        return True
    if not isinstance(exc, OperationalError):
        return False
    sqlstate = getattr(exc.__cause__, "sqlstate", None)
    return sqlstate is None or sqlstate[:2] in _RETRYABLE_SQLSTATE_CLASSES


def prepare(row: dict) -> dict:
    """The row as it is stored: redacted, then sanitized. Never raises."""
    try:
        return sanitize_row(_redacted(row), copy=False)  # _redacted made a copy already
    except Exception as exc:  # a bug in redaction or sanitizing must not cost the row
        logger.exception("audit row %s could not be prepared", row.get("request_id"))
        from audit.redaction import withhold

        # Every free-text field is withheld, not only prompt and response: redaction did
        # not finish, so any of them (user, tags, error text) may still hold PII.
        fields = withhold({key: value for key, value in row.items() if not key.startswith("_")})
        fields["metadata"] = {
            **(fields.get("metadata") or {}),
            "audit_prepare_failed": type(exc).__name__,
        }
        return sanitize_row(fields, thorough=True)


def _already_written(request_ids: list[str]) -> set[str]:
    from audit.models import AuditEvent

    found: set[str] = set()
    for start in range(0, len(request_ids), 1000):
        chunk = request_ids[start : start + 1000]
        found.update(
            AuditEvent.objects.filter(request_id__in=chunk).values_list("request_id", flat=True)
        )
    return found


def _insert(rows: list[dict], between_rows: Callable[[], None] | None = None) -> None:
    """Insert in a savepoint when the caller holds a transaction (tests, a command run in
    one), so that a refused row does not abort the caller's transaction; the writer thread
    runs in autocommit and pays for no savepoint."""
    from audit.bulk import insert_rows

    savepoint = transaction.atomic() if connection.in_atomic_block else contextlib.nullcontext()
    with savepoint:
        insert_rows(rows, between_rows=between_rows)


@dataclass
class Settled:
    """What became of rows handed to `write_rows`, in order: the first `count` are settled
    (written, found already written, or dead-lettered); the rest met an outage."""

    count: int = 0
    written: int = 0
    present: int = 0
    dead_lettered: int = 0
    outage: bool = False

    def add(self, other: Settled) -> None:
        self.count += other.count
        self.written += other.written
        self.present += other.present
        self.dead_lettered += other.dead_lettered
        self.outage = self.outage or other.outage


def write_rows(
    rows: list[dict],
    *,
    check_existing: list[bool] | bool = False,
    between_rows: Callable[[], None] | None = None,
) -> Settled:
    """Write prepared rows (audit.writer.prepare) with bad-row isolation; never raises.

    `check_existing` (per row or for all): rows that may already be in the database (a
    retry, a replay) are looked up by request_id first and skipped if found, since an
    audit row is a billing row and a duplicate would charge twice.
    """
    if isinstance(check_existing, bool):
        check_existing = [check_existing] * len(rows)
    try:
        present = _already_written(
            [row["request_id"] for row, unsure in zip(rows, check_existing, strict=True) if unsure]
        )
    except Exception as exc:
        # Without knowing what is there, writing could duplicate: try again later.
        logger.warning("audit: could not look up rows already written: %s", exc)
        return Settled(outage=True)
    skipped = [
        unsure and row["request_id"] in present
        for row, unsure in zip(rows, check_existing, strict=True)
    ]
    todo = [(index, row) for index, row in enumerate(rows) if not skipped[index]]
    settled = Settled(present=sum(skipped))
    try:
        if todo:
            _insert([row for _, row in todo], between_rows)
    except Exception as exc:
        if is_outage(exc):
            logger.warning("audit: %d rows not written, database away: %s", len(rows), exc)
            return Settled(outage=True)
        logger.warning("audit batch refused (%s); isolating the bad rows", exc)
    else:
        settled.written = len(todo)
        settled.count = len(rows)
        return settled
    # One by one: the rest of the batch lands, a bad row goes to the dead-letter file.
    for index, row in todo:
        try:
            _insert([row])
            settled.written += 1
            continue
        except Exception as exc:
            outcome = None if is_outage(exc) else _write_alone(row, exc)
        if outcome is None:  # the database went away: rows from `index` on are not settled
            settled.count = index
            settled.present = sum(skipped[:index])
            settled.outage = True
            return settled
        if outcome:
            settled.written += 1
        else:
            settled.dead_lettered += 1
    settled.count = len(rows)
    return settled


def _write_alone(fields: dict, first: Exception) -> bool | None:
    """A row refused on its own: True if a repaired copy was written, False if it went to
    the dead-letter file, None if the database went away meanwhile (or the dead-letter
    file cannot be written: the row stays in memory then, never dropped)."""
    error: BaseException = first
    if isinstance(first, IntegrityError):
        # Most likely the tenant or key was deleted while the row waited: keep the row,
        # with its slug and key prefix, minus the links.
        fields = {**fields, "tenant_id": None, "api_key_id": None}
        try:
            _insert([fields])
            return True
        except Exception as exc:
            if is_outage(exc):
                return None
            error = exc
    # Lone surrogates and the like, which the per-row fast checks leave alone.
    repaired = sanitize_row(fields, thorough=True)
    try:
        _insert([repaired])
        return True
    except Exception as exc:
        if is_outage(exc):
            return None
        error = exc
    logger.error("audit row %s refused by the database: %s", fields.get("request_id"), error)
    try:
        spool.dead_letter_append([repaired], error=repr(error))
    except OSError:
        logger.exception(
            "audit row %s: the dead-letter file cannot be written", fields.get("request_id")
        )
        return None
    return False


def replay_spool_file(path: Path) -> Settled | None:
    """Write one spool file's rows, then delete it; None if another process holds it.

    The file stays if the database went away meanwhile (`outage`): every row is looked up
    by request_id before it is written, so replaying a file again (this one half done, or
    one a killed process was replaying) writes nothing twice."""
    total = Settled()
    with spool.claimed(path) as fd:
        if fd is None:
            return None
        lines = spool.read_claimed(fd)
        rows = [sanitize_row(row) for row in lines.rows]
        size = settings.AUDIT_BATCH_SIZE
        for start in range(0, len(rows), size):
            total.add(write_rows(rows[start : start + size], check_existing=True))
            if total.outage:
                return total
        if lines.unreadable:  # kept for a person to look at, never dropped
            spool.dead_letter_append_lines(b"".join(line + b"\n" for line in lines.unreadable))
            total.dead_lettered += len(lines.unreadable)
        spool.remove(path)
    return total


class AuditWriter:
    def __init__(self) -> None:
        self._queue: deque[dict] = deque()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._spiller: threading.Thread | None = None
        self._overflow = threading.Event()  # set by record() past AUDIT_QUEUE_MAX
        self._closing = False
        self._write_lock = threading.Lock()  # one batch in flight per process
        self._in_flight: list[dict] = []  # the batch being written (for a stuck shutdown)
        # When to look at the spool next (time.monotonic()); 0: at the thread's first run.
        self._spool_due = 0.0
        # When each key's last_used_at was last written: a busy key is written at most once
        # per AUDIT_KEY_TOUCH_SECONDS, not once per batch.
        self._touched: dict[int, datetime] = {}
        self.written = 0
        self.failures = 0
        self.spilled = 0  # rows this process moved to the spool
        self.dead_lettered = 0  # rows this process put in the dead-letter file

    # --- the hot path ------------------------------------------------------------------------
    def record(self, row: dict) -> None:
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
        paying the fixed cost of a statement and a commit (about 0.3 ms of the writer's
        CPU, held against the proxy's share of the GIL, and a commit for Postgres). Paced,
        a batch holds an interval's traffic: at 1,000 requests a second, 200 rows."""
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

    def _spill(self, rows: list[dict]) -> bool:
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

    def _write_taken(self, batch: list[dict], *, own_thread: bool) -> bool:
        if own_thread:
            # The writer thread's connection may have gone stale between batches; a
            # caller's connection (tests, shutdown) is the caller's business.
            close_old_connections()
        last_used: dict[int, datetime] = {}
        rows = []
        between_rows = _GiveWay() if own_thread else None
        for row in batch:
            fields = prepare(row)
            key_id = fields.get("api_key_id")
            if key_id is not None:
                when = fields["created_at"]
                last_used[key_id] = max(when, last_used.get(key_id, when))
            rows.append(fields)
            if between_rows is not None:
                between_rows()
        settled = write_rows(
            rows,
            check_existing=[bool(row.get("_unsure")) for row in batch],
            between_rows=between_rows,
        )
        self.dead_lettered += settled.dead_lettered
        if settled.count < len(batch):
            self.failures += 1
            rest = batch[settled.count :]
            for row in rest:
                # This attempt may have committed without our hearing of it: look the row
                # up before writing it again.
                row["_unsure"] = True
            self._put_back(rest)
            if own_thread:
                close_old_connections()
            return False
        self._touch_keys(last_used)
        self.written += settled.written
        return True

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

    def _spill_queue(self, extra: list[dict] | None = None) -> None:
        with self._cond:
            rows = [*(extra or []), *self._queue]
            self._queue.clear()
        if rows and not self._spill(rows):
            with self._cond:
                self._queue.extendleft(reversed(rows))
            logger.error("audit rows left unwritten at shutdown: %d", len(rows))

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
