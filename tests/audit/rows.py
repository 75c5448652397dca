"""Audit rows for tests: what Exchange.record() would hand the writer."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.utils import timezone

from audit.row import AuditRow, RedactionRules

NO_RULES_IN_FORCE = RedactionRules(())


def row(request_id: str, **fields: Any) -> AuditRow:
    """A successful row with no tenant, under no redaction rules unless `rules` says."""
    values: dict[str, Any] = {
        "created_at": timezone.now(),
        "route": "echo",
        "outcome": "success",
        "status_code": 200,
        "cost_usd": Decimal("0.0000012345"),
        "rules": NO_RULES_IN_FORCE,
        **fields,
    }
    return AuditRow(request_id=request_id, **values)
