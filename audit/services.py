"""Writes for redaction rules. The admin, commands and importer call these."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from audit.models import AuditEvent, RedactionRule
from gateway_project.lib.upsert import Upserted, upsert


def redaction_rule_upsert(
    *,
    name: str,
    detector: str,
    pattern: str = "",
    replacement: str = "[REDACTED]",
    scope: str = RedactionRule.Scope.AUDIT,
    enabled: bool = True,
    position: int = 0,
) -> Upserted[RedactionRule]:
    """Create the rule `name` or bring it to these values.

    Validation (`RedactionRule.clean`) refuses a regex rule whose pattern is invalid or
    unsafe, so nothing the proxy would choke on can be saved through here.
    """
    return upsert(
        RedactionRule,
        lookup={"name": name},
        values={
            "detector": detector,
            "pattern": pattern,
            "replacement": replacement,
            "scope": scope,
            "enabled": enabled,
            "position": position,
        },
    )


def redaction_rule_delete(*, rule: RedactionRule) -> None:
    rule.delete()


def audit_purge_older_than(*, days: int, batch_size: int = 10_000) -> int:
    """Delete audit rows older than `days`, in batches so no lock is held for long."""
    cutoff = timezone.now() - timedelta(days=days)
    deleted = 0
    while True:
        ids = list(
            AuditEvent.objects.filter(created_at__lt=cutoff).values_list("pk", flat=True)[
                :batch_size
            ]
        )
        if not ids:
            return deleted
        deleted += AuditEvent.objects.filter(pk__in=ids).delete()[0]
