"""Writes for configuration versions: record one, roll back to one.

`config_version_record` runs after a transaction that changed configuration rows commits
(routing/signals.py), once per transaction. It exports the configuration (the data
`export_gateway_config` writes as YAML) and keeps it unless it is the latest version's
data and routing hash again. Changes the document cannot show (a key issued or
revoked, a price scheduled for later) are recorded all the same, with the document as
it stands.

A rollback is an import of the version's document with prune (the path
`import_gateway_config --prune` takes), so it goes through every service, is recorded as
a version of its own and reaches the proxy through the generation like any change.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import orjson
from django.db import connection, transaction

from gateway_project.lib.actor import SYSTEM, Actor, acting_as, current_actor
from routing.config_io import ImportReport, config_export, config_import
from routing.models import ConfigVersion
from routing.snapshot import routing_version
from routing.versions.diff import document_changes
from routing.versions.selectors import config_version_latest

# Rows whose changes the exported document may not show: API keys are listed only when
# they carry settings (never their status), and the document has the prices in force now,
# not those scheduled for later.
UNSEEN_IN_DOCUMENT = frozenset({"tenants.ApiKey", "billing.PriceVersion"})

_SUMMARY_ITEMS = 4
_SUMMARY_CHARS = ConfigVersion._meta.get_field("summary").max_length or 500
_LOCK_CLASS, _LOCK_OBJECT = 1314, 0  # pg_advisory_xact_lock: billing's period locks use 1313


@dataclass(frozen=True)
class VersionContext:
    """Who makes the change and why, as a transaction starts changing configuration."""

    actor: Actor
    note: str = ""
    rollback_of_id: int | None = None


_note: ContextVar[tuple[str, int | None]] = ContextVar("version_note", default=("", None))


@contextmanager
def version_note(note: str, *, rollback_of_id: int | None = None) -> Iterator[None]:
    """Versions recorded for changes made inside start their summary with `note`."""
    token = _note.set((note, rollback_of_id))
    try:
        yield
    finally:
        _note.reset(token)


def version_context() -> VersionContext:
    note, rollback_of_id = _note.get()
    return VersionContext(actor=current_actor(), note=note, rollback_of_id=rollback_of_id)


def _lock() -> None:
    """Until the transaction ends, no other recorder runs: each compares with the version
    the one before it wrote."""
    if connection.vendor != "postgresql":
        return  # SQLite lets one writer at a time in
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_CLASS, _LOCK_OBJECT])


def _summary(note: str, what: list[str]) -> str:
    shown = "; ".join(what[:_SUMMARY_ITEMS])
    if len(what) > _SUMMARY_ITEMS:
        shown += f"; and {len(what) - _SUMMARY_ITEMS} more"
    text = ": ".join(part for part in (note, shown) if part) or "no visible change"
    return text if len(text) <= _SUMMARY_CHARS else text[: _SUMMARY_CHARS - 1] + "…"


def _content(data: dict[str, Any]) -> bytes:
    # JSON in the export's own order; anything orjson does not know (none today) as text.
    return orjson.dumps(data, default=str)


def config_version_record(
    *,
    changes: Sequence[str] = (),
    labels: Collection[str] = (),
    context: VersionContext | None = None,
) -> ConfigVersion | None:
    """Record the configuration as it is now, unless it is the latest version's again.

    `changes` are the rows written (one line each), `labels` their models ("app.Model").
    Returns the new version, or None when nothing differs.
    """
    context = context or version_context()
    with transaction.atomic():
        _lock()
        data = config_export()
        content = _content(data)
        digest = hashlib.sha256(content).hexdigest()
        routing = routing_version()
        latest = config_version_latest()
        unseen = bool(UNSEEN_IN_DOCUMENT & set(labels))
        if (
            latest is not None
            and not unseen
            and (latest.digest, latest.routing_version)
            == (
                digest,
                routing,
            )
        ):
            return None
        # The first version is the whole configuration: its note says so, not a list of it.
        what = (
            document_changes(orjson.loads(latest.content), orjson.loads(content))
            if latest is not None
            else []
        ) or list(changes)
        return ConfigVersion.objects.create(
            user_id=context.actor.user_id,
            actor=context.actor.label[:200],
            summary=_summary(context.note, what),
            changes=list(changes),
            content=content.decode(),
            digest=digest,
            routing_version=routing,
            rollback_of_id=context.rollback_of_id,
        )


def config_version_baseline() -> ConfigVersion | None:
    """After `migrate`: the configuration becomes a version if it is not the latest one,
    the first time (versions begin) or after a change made outside the services (a data
    migration, SQL by hand)."""
    latest = config_version_latest()
    note = (
        "the configuration when version history began"
        if latest is None
        else "changed outside the services (found after migrate)"
    )
    with acting_as(SYSTEM), version_note(note):
        return config_version_record()


@dataclass
class Rollback:
    """What rolling back to `target` did (or, for a dry run, would do)."""

    target: ConfigVersion
    report: ImportReport  # the import's counts (for a dry run too: it ran, then rolled back)
    recorded: ConfigVersion | None = None  # the version the rollback itself recorded
    # What still differs from the target's document afterwards: the import never deletes
    # providers, models or tenants.
    not_restored: list[str] = field(default_factory=list)


def config_version_rollback(*, version: ConfigVersion, dry_run: bool = False) -> Rollback:
    """Make the configuration `version`'s document again: an import with prune.

    Raises ConfigError, with nothing written, when the document no longer applies (a key
    it configures was deleted since, say). A dry run does all of it and rolls it back.
    """
    source = f"version {version.pk}"
    # The data its YAML document is rendered from, which a rollback imports as it is.
    target: dict[str, Any] = orjson.loads(version.content)
    latest = config_version_latest()
    note = version_note(f"rollback to version {version.pk}", rollback_of_id=version.pk)
    with note, transaction.atomic():
        report = config_import(data=target, prune=True, source=source)
        not_restored = document_changes(target, orjson.loads(_content(config_export())))
        if dry_run:
            transaction.set_rollback(True)
    recorded = None
    if report.changed and not dry_run:  # recorded when the import's transaction committed
        after = config_version_latest()
        if after is not None and (latest is None or after.pk > latest.pk):
            recorded = after
    return Rollback(version, report, recorded, not_restored)
