"""When the configuration changes: invalidate every process's snapshot, record a version.

Every configuration model's post_save and post_delete lands here. The rows one transaction
writes are collected into one `_Batch`, registered once with `transaction.on_commit`: after
the commit it announces the change (a new generation token) and records one configuration
version (routing/versions/), however many rows the transaction wrote. A rolled-back
transaction or savepoint drops the batch with the rest of its on-commit callbacks.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from django.db import DEFAULT_DB_ALIAS, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Model
from django.db.models.signals import post_delete, post_save

from gateway_project.lib import generation
from gateway_project.lib.actor import SYSTEM, Actor

if TYPE_CHECKING:
    from routing.versions.services import VersionContext

logger = logging.getLogger(__name__)

_MAX_CHANGES = 500  # lines kept per version; an import of thousands of rows says how many more


def _announce() -> None:
    from routing.snapshot import snapshots

    snapshots.invalidate()
    try:
        generation.bump()
    except Exception:
        # The write is committed: generation.bump keeps retrying in the background,
        # and every process rebuilds its snapshot within GATEWAY_SNAPSHOT_MAX_AGE_SECONDS
        # anyway, so the change is in force everywhere within that bound.
        logger.exception("could not announce a configuration change; retrying")


def _describe(instance: Model, action: str) -> str:
    try:
        label = str(instance)
    except Exception:  # a related row deleted in the same cascade: the id will do
        label = f"#{instance.pk}"
    line = f"{instance._meta.verbose_name} {label} {action}"
    status = getattr(instance, "status", None)
    if action == "changed" and status is not None:
        line += f" (now {status})"  # a revoked key, a suspended tenant
    return line


class _Batch:
    """One transaction's configuration changes, and what to do once it commits."""

    def __init__(self) -> None:
        self.changes: list[str] = []
        self.more = 0
        self.labels: set[str] = set()
        self.done = False
        # Who and why, as the transaction runs (the request, command or rollback around it).
        self.context: VersionContext | None = None
        try:
            from routing.versions.services import version_context

            self.context = version_context()
        except Exception:  # recorded as the system's rather than fail the write
            logger.exception("could not tell who is changing the configuration")

    def add(self, instance: Model, action: str) -> None:
        self.labels.add(instance._meta.label)
        line = _describe(instance, action)
        if line in self.changes:
            return
        if len(self.changes) < _MAX_CHANGES:
            self.changes.append(line)
        else:
            self.more += 1

    def __call__(self) -> None:
        self.done = True
        _announce()
        try:
            from routing.versions.services import VersionContext, config_version_record

            changes = self.changes + ([f"and {self.more} more"] if self.more else [])
            context = self.context or VersionContext(actor=Actor(label=SYSTEM))
            config_version_record(changes=changes, labels=self.labels, context=context)
        except Exception:
            # The change is committed and announced; only its history entry is missing.
            # The next recorded version (or the next migrate) still holds the whole state.
            logger.exception("could not record a configuration version")


def _pending(connection: BaseDatabaseWrapper) -> _Batch | None:
    # The batch is registered with the transaction's first change, so it sits near the
    # head of the on-commit list: found after a few entries, however long the import.
    for entry in connection.run_on_commit:  # (savepoint ids, func, robust)
        func = entry[1]
        if isinstance(func, _Batch) and not func.done:
            return func
    return None


def _config_changed(sender: type[Model], instance: Model, **kwargs: Any) -> None:
    action = "deleted" if kwargs.get("signal") is post_delete else (
        "added" if kwargs.get("created") else "changed"
    )  # fmt: skip
    using = kwargs.get("using") or DEFAULT_DB_ALIAS
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:  # autocommit: this row is its own transaction
        batch = _Batch()
        _note(batch, instance, action)
        batch()
        return
    pending = _pending(connection)
    if pending is None:
        pending = _Batch()
        transaction.on_commit(pending, using=using, robust=True)
    _note(pending, instance, action)


def _note(batch: _Batch, instance: Model, action: str) -> None:
    try:
        batch.add(instance, action)
    except Exception:
        # Never fail the write for its history: the version still records the whole state.
        logger.exception("could not describe a configuration change")


def connect() -> None:
    from audit.models import RedactionRule
    from billing.models import Budget, PriceVersion, RateLimit
    from providers.models import Provider, ProviderModel
    from routing.models import Route, RouteTarget
    from tenants.models import ApiKey, Tenant

    for model in (
        Tenant,
        ApiKey,
        Provider,
        ProviderModel,
        Route,
        RouteTarget,
        RedactionRule,
        Budget,
        RateLimit,
        PriceVersion,
    ):
        post_save.connect(_config_changed, sender=model, dispatch_uid=f"cfg-save-{model.__name__}")
        post_delete.connect(
            _config_changed, sender=model, dispatch_uid=f"cfg-delete-{model.__name__}"
        )
