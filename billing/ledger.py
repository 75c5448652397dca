"""The usage ledger's writer: one UsageLine per billable request, from the audit rows.

Registered with the audit writer (audit.store.register_companion) by BillingConfig.ready():
audit sits below billing and cannot import it. Every audit row reaches the database
through audit.store.write_rows (the writer thread, the spool and dead-letter replays), so
every billable row gets its line in the transaction that inserts it, and a row that has
not landed (spooled, dead-lettered) has no line until it does.

Idempotent on request_id, so a batch retried after a commit whose answer was lost, or a
file replayed twice, never counts a request twice. On Postgres the lines are made by one
`INSERT ... SELECT ... ON CONFLICT (request_id) DO NOTHING` from the audit rows the batch
has just inserted, given only their request ids: the writer thread shares the GIL with
the proxy, and encoding every value a second time (a COPY of its own, or the ORM's
bulk_create) cost it one to several times the audit rows' own COPY. Elsewhere
bulk_create with ignore_conflicts, the same statement's SQLite spelling.
"""

from __future__ import annotations

import functools
from decimal import Decimal
from typing import Any

from django.db import connection, transaction

from audit.json_columns import EncodedJson
from billing.models import UsageLine

# The bookkeeping keys the audit writer adds to a row's metadata: not the caller's tags.
_NOT_TAGS = ("audit_sanitized", "audit_prepare_failed")
# Every column but the id and the billing statement's (set when a period closes).
_FIELDS = [
    field
    for field in UsageLine._meta.concrete_fields
    if not field.primary_key and field.name != "statement_id"
]


def is_billable(row: dict) -> bool:
    """A success, or any other request that consumed usage (cancelled by the client, or a
    stream broken after it started: the budget counters were charged for it, and the
    upstream bills it). A refused request costs nothing and is no line, nor is a failure
    that consumed nothing."""
    outcome = row.get("outcome")
    if outcome == "success":
        return True
    if outcome == "rejected":
        return False
    return bool(row.get("prompt_tokens") or row.get("completion_tokens") or row.get("cost_usd"))


def _tags(metadata: Any) -> dict:
    if isinstance(metadata, EncodedJson):
        metadata = metadata.value()
    if not isinstance(metadata, dict):
        return {}
    return {key: value for key, value in metadata.items() if key not in _NOT_TAGS}


def _values(row: dict) -> dict[str, Any]:
    """The line's values by attname; `metadata` as the row has it (see _tags)."""
    get = row.get
    return {
        "request_id": row["request_id"],
        "created_at": row["created_at"],
        "tenant_id": get("tenant_id"),
        "tenant_slug": get("tenant_slug", ""),
        "api_key_id": get("api_key_id"),
        "key_prefix": get("key_prefix", ""),
        "route_id": get("route_id"),
        "route": get("route", ""),
        "provider": get("provider", ""),
        "model": get("model", ""),
        "price_version_id": get("price_version_id"),
        "prompt_tokens": get("prompt_tokens", 0),
        "completion_tokens": get("completion_tokens", 0),
        "cached_tokens": get("cached_tokens", 0),
        "reasoning_tokens": get("reasoning_tokens", 0),
        "total_tokens": get("total_tokens", 0),
        "cost_usd": get("cost_usd", Decimal(0)),
        "metadata": get("metadata"),
        "stream": get("stream", False),
        "outcome": row["outcome"],
    }


@functools.cache
def _from_audit_rows_sql() -> str:
    """One INSERT ... SELECT that makes the lines from the batch's audit rows, just inserted
    in this transaction, matched by request_id (indexed). Nothing is encoded in Python a
    second time: the writer thread, which shares the GIL with the proxy, only passes the
    request ids; the billable test and the tags are the same as is_billable and _tags."""
    from audit.models import AuditEvent

    quote = connection.ops.quote_name
    columns = [field.column for field in _FIELDS]
    select = [
        "CASE WHEN jsonb_typeof(metadata) = 'object' THEN metadata"
        + "".join(f" - '{key}'" for key in _NOT_TAGS)
        + " ELSE '{}'::jsonb END"
        if column == "metadata"
        else quote(column)  # type: ignore[arg-type]  # concrete: a column
        for column in columns
    ]
    return (
        f"INSERT INTO {quote(UsageLine._meta.db_table)} "
        f"({', '.join(quote(column) for column in columns)}) "  # type: ignore[arg-type]  # concrete: a column
        f"SELECT {', '.join(select)} FROM {quote(AuditEvent._meta.db_table)} "
        "WHERE request_id = ANY(%s) AND (outcome = 'success' OR (outcome <> 'rejected' AND "
        "(prompt_tokens > 0 OR completion_tokens > 0 OR cost_usd <> 0))) "
        "ON CONFLICT (request_id) DO NOTHING"
    )


def _insert_postgres(request_ids: list[str]) -> None:
    # In one transaction whoever calls (inside the writer's batch transaction this adds
    # nothing): the lines are made from the audit rows, which must be there to be read.
    with (
        transaction.atomic(savepoint=False),
        connection.wrap_database_errors,
        connection.cursor() as cursor,
    ):
        cursor.execute(_from_audit_rows_sql(), [request_ids])


def ledger_write(rows: list[dict]) -> None:
    """The lines of the billable ones of `rows` (audit rows already inserted in this
    transaction, as prepared by the writer), each at most once."""
    if connection.vendor == "postgresql":
        _insert_postgres([row["request_id"] for row in rows])
        return
    lines = [_values(row) for row in rows if is_billable(row)]
    for line in lines:
        line["metadata"] = _tags(line["metadata"])
    UsageLine.objects.bulk_create([UsageLine(**line) for line in lines], ignore_conflicts=True)


# What an audit row holds that its ledger line copies (AuditEvent's columns by attname).
_AUDIT_COLUMNS = (
    "id",
    "request_id",
    "created_at",
    "tenant_id",
    "tenant_slug",
    "api_key_id",
    "key_prefix",
    "route_id",
    "route",
    "provider",
    "model",
    "price_version_id",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
    "cost_usd",
    "metadata",
    "stream",
    "outcome",
)


def ledger_backfill(*, batch_size: int = 2000) -> int:
    """Give every billable audit row that has no ledger line its line; the number added.

    For audit rows written before the ledger existed, or by a process still running the
    previous release during a rolling deploy: budget rebuilds sum the ledger, and a row
    without its line would be spend they do not see. Idempotent (lines are unique by
    request_id), so it can run again after every process runs this release."""
    from audit.models import AuditEvent

    before = UsageLine.objects.count()
    last_id = 0
    while True:
        rows = list(
            AuditEvent.objects.filter(id__gt=last_id)
            .order_by("id")
            .values(*_AUDIT_COLUMNS)[:batch_size]
        )
        if not rows:
            break
        last_id = rows[-1]["id"]
        ledger_write(rows)
    return UsageLine.objects.count() - before
