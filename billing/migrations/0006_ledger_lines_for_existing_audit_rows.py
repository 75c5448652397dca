"""The usage ledger starts with the audit rows already written.

Budget counters are rebuilt from the ledger (billing.selectors.budget_spend_in_period):
without a line for each billable row written before the ledger existed, a budget rebuilt
after the upgrade would not see this period's spend so far, and would let it be spent
again. Historical models, not billing.ledger: this must run as the schema stands here.
Processes of the previous release still running during a rolling deploy write rows
without lines: `manage.py billing_backfill_ledger` afterwards adds theirs (idempotent).
"""

from __future__ import annotations

from django.db import migrations

_COPIED = (
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
    "stream",
    "outcome",
)
_NOT_TAGS = ("audit_sanitized", "audit_prepare_failed")


def _billable(row: dict) -> bool:
    # As billing.ledger.is_billable: a success, or anything but a refusal that consumed usage.
    if row["outcome"] == "success":
        return True
    if row["outcome"] == "rejected":
        return False
    return bool(row["prompt_tokens"] or row["completion_tokens"] or row["cost_usd"])


def lines_for_existing_rows(apps, schema_editor):
    AuditEvent = apps.get_model("audit", "AuditEvent")
    UsageLine = apps.get_model("billing", "UsageLine")
    last_id = 0
    while True:
        rows = list(
            AuditEvent.objects.filter(id__gt=last_id)
            .order_by("id")
            .values("id", "metadata", *_COPIED)[:2000]
        )
        if not rows:
            return
        last_id = rows[-1]["id"]
        lines = []
        for row in rows:
            if not _billable(row):
                continue
            metadata = row["metadata"] if isinstance(row["metadata"], dict) else {}
            tags = {key: value for key, value in metadata.items() if key not in _NOT_TAGS}
            lines.append(UsageLine(metadata=tags, **{name: row[name] for name in _COPIED}))
        UsageLine.objects.bulk_create(lines, ignore_conflicts=True)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0005_commercial_terms_permissions"),
        ("audit", "0004_cached_and_reasoning_tokens"),
    ]

    operations = [
        migrations.RunPython(lines_for_existing_rows, migrations.RunPython.noop, elidable=True),
    ]
