"""What admin classes share to write through their app's services.

ModelAdmin would save the instance its form built. The admins hand the form's values to
the app's service instead, so the admin, the management API, the config importer and the
commands share one write path (its validation, its transaction, its signals), then make
the admin's instance the row the service wrote (`adopt`): the admin keeps using that
instance for its inlines, its history entry and its redirect.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from django.contrib import admin
from django.db.models import Model
from django.forms import BaseModelFormSet
from django.http import HttpRequest

M = TypeVar("M", bound=Model)


def adopt(obj: Model, saved: Model) -> None:
    """Turn the admin's instance into the row a service has just created or updated."""
    obj.pk = saved.pk
    obj.refresh_from_db()
    obj._state.adding = False


def stored(obj: M) -> M:
    """The row as the database has it. The admin's instance already carries the form's
    values, so an update service, which writes only what differs, compares with this."""
    return type(obj)._default_manager.get(pk=obj.pk)


def values_of(obj: Model, names: Iterable[str]) -> dict[str, Any]:
    """The values the form put on `obj`, for the fields `names`, as service arguments."""
    return {name: getattr(obj, name) for name in names}


def save_inline(
    formset: BaseModelFormSet,
    *,
    create: Callable[[Any], Model],
    update: Callable[[Any, Any], object],
    delete: Callable[[Any], object],
) -> None:
    """Save an inline formset's rows through services: `delete(row)`, `update(stored row,
    the form's instance)`, `create(the form's instance)` returning the new row.

    Deletions go first so a row may take over a name another row gave up in the same save.
    """
    formset.save(commit=False)  # sorts the rows into new, changed and deleted; writes nothing
    for obj in formset.deleted_objects:
        delete(obj)
    for obj, _changed in formset.changed_objects:
        update(stored(obj), obj)
    for obj in formset.new_objects:
        adopt(obj, create(obj))


class ReadOnlyAdmin(admin.ModelAdmin):
    """An admin for rows nobody edits by hand (written by the proxy, a task or a service):
    its pages may be viewed, never added to, changed or deleted."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Model | None = None) -> bool:
        return False
