"""Writes for redaction rules. The admin, commands and importer call these."""

from __future__ import annotations

from audit.models import RedactionRule
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
