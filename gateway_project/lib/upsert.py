"""Idempotent writes for the configuration services.

A row is saved only when one of its values actually differs. That is what makes
importing the same configuration twice a no-op: no save means no post_save signal, so
the proxy's config snapshot is not invalidated by an import that changed nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from django.db import models

M = TypeVar("M", bound=models.Model)
S = TypeVar("S")


class Change(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    DELETED = "deleted"


@dataclass(frozen=True)
class Upserted(Generic[M]):
    instance: M
    change: Change


@dataclass
class SyncResult:
    """What replacing a list of rows (targets, budgets, limits) did, row by row."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.deleted)


def update_fields(instance: M, values: Mapping[str, Any]) -> Upserted[M]:
    """Set the values that differ, validate, and save; leave the row alone otherwise."""
    changed = [name for name, value in values.items() if getattr(instance, name) != value]
    if not changed:
        return Upserted(instance, Change.UNCHANGED)
    for name in changed:
        setattr(instance, name, values[name])
    instance.full_clean()
    instance.save()
    return Upserted(instance, Change.UPDATED)


def upsert(model: type[M], *, lookup: Mapping[str, Any], values: Mapping[str, Any]) -> Upserted[M]:
    """Create the row identified by `lookup`, or bring its other fields to `values`."""
    instance = model._default_manager.filter(**lookup).first()
    if instance is None:
        instance = model(**lookup, **values)
        instance.full_clean()
        instance.save()
        return Upserted(instance, Change.CREATED)
    return update_fields(instance, values)


def replace_rows(
    existing: Sequence[M],
    desired: Sequence[S],
    *,
    values: Callable[[S], dict[str, Any]],
    create: Callable[[S], M],
) -> SyncResult:
    """Make an ordered list of rows match `desired`, reusing rows in place.

    Rows are paired by position, so an unchanged list writes nothing and a changed one
    keeps the ids of the rows it can (their history in the admin stays attached).
    """
    result = SyncResult()
    for row, spec in zip(existing, desired, strict=False):
        if update_fields(row, values(spec)).change == Change.UPDATED:
            result.updated += 1
        else:
            result.unchanged += 1
    for spec in desired[len(existing) :]:
        create(spec)
        result.created += 1
    for row in existing[len(desired) :]:
        row.delete()
        result.deleted += 1
    return result
