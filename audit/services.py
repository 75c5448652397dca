"""Writes for redaction rules and the audit log. The admin, commands and importer call these.

A rule is validated (`RedactionRule.clean` refuses an invalid or unsafe regex) and saved
through the model, so post_save tells the proxy's config snapshot; an update writes only
when a value differs.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TypedDict, Unpack

from django.conf import settings
from django.utils import timezone

from audit import spool
from audit.models import AuditEvent, RedactionRule
from audit.sanitize import sanitize_row
from audit.store import replay_spool_file, write_rows
from gateway_project.lib.upsert import Upserted, update_fields, upsert


class RedactionRuleChanges(TypedDict, total=False):
    name: str
    detector: str
    pattern: str
    replacement: str
    scope: str
    enabled: bool
    position: int


def redaction_rule_create(
    *,
    name: str,
    detector: str,
    pattern: str = "",
    replacement: str = "[REDACTED]",
    scope: str = RedactionRule.Scope.AUDIT,
    enabled: bool = True,
    position: int = 0,
) -> RedactionRule:
    rule = RedactionRule(
        name=name,
        detector=detector,
        pattern=pattern,
        replacement=replacement,
        scope=scope,
        enabled=enabled,
        position=position,
    )
    rule.full_clean()
    rule.save()
    return rule


def redaction_rule_update(
    *, rule: RedactionRule, **changes: Unpack[RedactionRuleChanges]
) -> Upserted[RedactionRule]:
    """Bring the fields given to these values (a rename included)."""
    return update_fields(rule, changes)


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


def redaction_rule_move(*, rule: RedactionRule, position: int) -> bool:
    """Put `rule` at `position` in the order rules apply; False if it was there already.
    A save, not a queryset update, so the proxy's snapshot hears of it."""
    if rule.position == position:
        return False
    rule.position = position
    rule.save(update_fields=["position"])
    return True


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


# --- Rows kept on local disk (audit/spool.py) --------------------------------------------------


@dataclass
class ReplayReport:
    """What a replay did with each row it read."""

    files: int = 0
    replayed: int = 0  # written now
    already_present: int = 0  # its request_id was in the database: not written twice
    still_failing: int = 0  # refused again: back in the dead-letter file
    kept_for_outage: int = 0  # the database went away meanwhile: kept to replay later

    def __str__(self) -> str:
        return (
            f"{self.files} file(s): {self.replayed} replayed, {self.already_present} already "
            f"present, {self.still_failing} still failing, {self.kept_for_outage} kept "
            "(database unavailable)"
        )


def audit_dead_letters_replay() -> ReplayReport:
    """Insert the dead-lettered rows again, sanitized; safe to run twice or concurrently.

    The file is moved aside first, so a row refused again (or one the writer threads
    dead-letter meanwhile) goes to a fresh dead-letter file; a row whose request_id is
    already in the database is not inserted again.
    """
    report = ReplayReport()
    for path in spool.dead_letter_claim():
        with spool.claimed(path) as fd:
            if fd is None:
                continue  # another replay holds it
            report.files += 1
            lines = spool.read_claimed(fd)
            seen: set[str] = set()
            rows = []
            for row in lines.rows:
                fields = sanitize_row(row, thorough=True)
                if fields.get("request_id") in seen:
                    report.already_present += 1  # the same row dead-lettered twice
                    continue
                seen.add(fields.get("request_id", ""))
                rows.append(fields)
            _replay_rows(rows, report)
            if lines.unreadable:  # not rows at all: kept for a person to read
                spool.dead_letter_append_lines(b"".join(line + b"\n" for line in lines.unreadable))
                report.still_failing += len(lines.unreadable)
            spool.remove(path)
    return report


def _replay_rows(rows: list[dict], report: ReplayReport) -> None:
    size = settings.AUDIT_BATCH_SIZE
    for start in range(0, len(rows), size):
        chunk = rows[start : start + size]
        settled = write_rows(chunk, check_existing=True)
        report.replayed += settled.written
        report.already_present += settled.present
        report.still_failing += settled.dead_lettered
        if settled.outage:
            rest = rows[start + settled.count :]
            spool.dead_letter_append(rest, error="kept: database unavailable during the replay")
            report.kept_for_outage += len(rest)
            return


def audit_spool_replay() -> ReplayReport:
    """Write the spool files now (the writer thread does it too, at start and once the
    database is back); a file another process is replaying is left to it."""
    report = ReplayReport()
    for path in spool.spool_files():
        settled = replay_spool_file(path)
        if settled is None:
            continue
        report.files += 1
        report.replayed += settled.written
        report.already_present += settled.present
        report.still_failing += settled.dead_lettered
        if settled.outage:
            report.kept_for_outage += spool_rows_in(path)
            break
    return report


def spool_rows_in(path: Path) -> int:
    return spool.rows_in_name(path) if path.exists() else 0
