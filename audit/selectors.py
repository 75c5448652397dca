"""Reads for redaction rules and the audit log."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from audit import spool
from audit.models import RedactionRule


def redaction_rule_list() -> QuerySet[RedactionRule]:
    """Every rule, disabled ones included, in the order they apply."""
    return RedactionRule.objects.order_by("position", "id")


@dataclass(frozen=True)
class AuditBacklog:
    """Where this process's audit rows stand (/ready shows them; /metrics reads them:
    routing/metrics/)."""

    pending: int  # queued in memory, this process
    spooled: int  # in spool files waiting for the database, every process sharing STATE_DIR
    dead_letters: int  # refused by the database: replay with audit_replay_dead_letters
    written: int  # written by this process since it started
    write_failures: int  # batches this process could not write (database away)
    spilled: int  # rows this process moved to the spool


def audit_backlog() -> AuditBacklog:
    """Reads local files, not the database (a stat and a directory listing; the dead-letter
    file is read again only when it changed)."""
    from audit.writer import audit_writer

    return AuditBacklog(
        pending=audit_writer.pending(),
        spooled=spool.spooled_row_count(),
        dead_letters=spool.dead_letter_count(),
        written=audit_writer.written,
        write_failures=audit_writer.failures,
        spilled=audit_writer.spilled,
    )


def audit_dead_letter_list(*, limit: int = 100) -> list[dict]:
    """The first dead-lettered rows, as stored (for the admin)."""
    return spool.dead_letter_rows(limit=limit)
