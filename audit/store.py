"""Storing prepared audit rows so that every row is settled: written, found already
written, or dead-lettered; never dropped, never written twice.

- `prepare` turns an AuditRow into what is stored: redacted with the rules it carries,
  then sanitized (audit/sanitize.py), so the database refusing it cannot depend on what a
  client sent or an upstream reported.
- `write_rows` inserts a batch in one statement (audit/bulk.py). A batch that fails
  because the database is away (a connection error, not the data: `is_outage`) is left
  unsettled for the caller to retry. Any other failure, whatever its exception, is a bad
  row: the batch is written row by row, and a row that still fails alone (re-sanitized,
  and without its tenant/key links if those are gone) goes to the dead-letter file
  (audit/spool.py), replayable with `manage.py audit_replay_dead_letters`.
- Rows that may already be in the database (a retry whose first commit may have got
  through, a spool or dead-letter file replayed twice) are looked up by request_id first
  and skipped if found: an audit row is a billing row, a duplicate would charge twice.

Every audit row reaches the database through `write_rows` (the writer thread, and the
spool and dead-letter replays in audit/services.py), hence through `bulk.insert_rows`:
there is no other `AuditEvent` insert, so sanitizing, bad-row isolation and the
exactly-once lookup cover every row whatever path it took.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.db import IntegrityError, InterfaceError, OperationalError, connection, transaction

from audit import spool
from audit.redaction import redact_row
from audit.row import AuditRow
from audit.row_text import withhold
from audit.sanitize import sanitize_row

logger = logging.getLogger(__name__)


def error_summary(exc: BaseException) -> str:
    """A database error for a log line: its SQLSTATE and primary message only. Postgres's
    DETAIL and CONTEXT lines, which psycopg puts in the error's text, quote the row
    ("Failing row contains (...)", "COPY ..., column prompt: ...": a prompt), and a log
    line must never hold one."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    diag = getattr(cause, "diag", None)
    primary = getattr(diag, "message_primary", None)
    if primary:
        return f"{getattr(cause, 'sqlstate', None) or '?'}: {primary}"
    return str(exc).split("\n", 1)[0][:300]


# SQLSTATE classes that mean the database is unavailable for now (connection exception,
# insufficient resources, operator intervention, system error, object in use) or that the
# same statement may succeed if retried (transaction rollback: serialization, deadlock).
_RETRYABLE_SQLSTATE_CLASSES = frozenset({"08", "40", "53", "55", "57", "58"})


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


def prepare(row: AuditRow) -> dict:
    """The row as it is stored: its columns redacted with the rules it carries, then
    sanitized. Never raises."""
    fields = row.columns()
    try:
        return sanitize_row(redact_row(row.rules, fields), copy=False)  # `fields` is ours
    except Exception as exc:  # a bug in redaction or sanitizing must not cost the row
        logger.exception("audit row %s could not be prepared", row.request_id)
        # Every free-text field is withheld, not only prompt and response: redaction did
        # not finish, so any of them (user, tags, error text) may still hold PII. From a
        # fresh copy: redaction may have stopped half-way through `fields`.
        fields = withhold(row.columns())
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


Companion = Callable[[list[dict]], None]
_companions: list[Companion] = []


def register_companion(companion: Companion) -> None:
    """Have `companion(rows)` write what goes with a batch of audit rows (the billing
    ledger: billing sits above audit, so it registers itself from its AppConfig.ready()).

    It is called with the prepared rows about to be inserted, inside the same transaction:
    the rows and what the companion writes commit together or not at all, so a row
    retried, replayed from the spool or from the dead-letter file gets its companion rows
    exactly when it lands itself. What it raises counts as the batch's failure (an outage,
    or a bad row isolated like any other). It must not write twice for a row written
    twice: the rows skipped as already written are not passed, but a companion should be
    idempotent anyway."""
    if companion not in _companions:
        _companions.append(companion)


def _insert(rows: list[dict], between_rows: Callable[[], None] | None = None) -> None:
    """Insert in a savepoint when the caller holds a transaction (tests, a command run in
    one), so that a refused row does not abort the caller's transaction; the writer thread
    runs in autocommit and pays for no savepoint, unless a companion writes with the rows
    (then one transaction holds both)."""
    from audit.bulk import insert_rows  # imports the models: not before the apps are ready

    atomic = (
        transaction.atomic()
        if connection.in_atomic_block or _companions
        else contextlib.nullcontext()
    )
    with atomic:
        insert_rows(rows, between_rows=between_rows)
        for companion in _companions:
            companion(rows)


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
        logger.warning("audit batch refused (%s); isolating the bad rows", error_summary(exc))
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
    logger.error(
        "audit row %s refused by the database: %s", fields.get("request_id"), error_summary(error)
    )
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
