"""Fixtures of the configuration version tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import pytest
from django.db import connection

from routing.models import ConfigVersion
from routing.signals import _Batch
from routing.versions.selectors import config_version_latest

Committed = Callable[[], AbstractContextManager[list[ConfigVersion]]]


@pytest.fixture
def committed(django_capture_on_commit_callbacks) -> Committed:
    """`with committed() as new:` runs the block as one transaction that commits (its
    on-commit callbacks run at the end, as after a real commit); `new` then holds the
    versions recorded, oldest first. What the test wrote before it is committed first."""

    @contextmanager
    def block() -> Iterator[list[ConfigVersion]]:
        # What the test wrote before (fixtures) commits first: its changes are not the block's.
        for entry in list(connection.run_on_commit):
            if isinstance(entry[1], _Batch) and not entry[1].done:
                entry[1]()
        latest = config_version_latest()
        new: list[ConfigVersion] = []
        with django_capture_on_commit_callbacks(execute=True):
            yield new
        after = ConfigVersion.objects.order_by("id")
        new += after.filter(pk__gt=latest.pk) if latest is not None else after

    return block
