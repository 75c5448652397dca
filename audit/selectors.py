"""Reads for redaction rules and the audit log.

The audit log can hold millions of rows: every read here is bounded by an indexed column
(`created_at`, `request_id`, the tenant, key or route with the time) and never counts or
groups the whole table. Traffic figures for the admin's dashboard are in audit/traffic.py.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import QuerySet

from audit import spool
from audit.models import AuditEvent, RedactionRule
from tenants.models import ApiKey


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


def audit_search(queryset: QuerySet[AuditEvent], *, term: str) -> QuerySet[AuditEvent]:
    """`queryset` narrowed to an exact request id or an API key's prefix.

    Exact and case-sensitive, on indexed columns: icontains or iexact wrap the column in
    UPPER() and read every row. A prefix is looked up among the keys (unique, a small
    table) and the rows found by the key's id, `audit_key_time`; the rows of a key deleted
    since keep the prefix but not the id, and are found by request id or time instead.
    """
    term = term.strip()
    if not term:
        return queryset
    key_id = ApiKey.objects.filter(prefix=term).values_list("id", flat=True).first()
    if key_id is not None:
        return queryset.filter(api_key_id=key_id)
    return queryset.filter(request_id=term)
