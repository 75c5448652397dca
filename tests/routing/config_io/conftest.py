"""Fixtures of the config_io tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db.models.signals import post_delete, post_save

from routing.config_io import config_load_file
from tests.routing.config_io.support import SHARED_EXAMPLE


@pytest.fixture
def shared_example() -> dict:
    if not SHARED_EXAMPLE.exists():
        pytest.skip(f"{SHARED_EXAMPLE} is not there")
    return config_load_file(SHARED_EXAMPLE)


@pytest.fixture
def writes() -> Iterator[list[str]]:
    """Every row saved or deleted while the test runs."""
    seen: list[str] = []

    def record(sender: type, **kwargs: object) -> None:
        seen.append(sender.__name__)

    post_save.connect(record, weak=False, dispatch_uid="test-writes-save")
    post_delete.connect(record, weak=False, dispatch_uid="test-writes-delete")
    yield seen
    post_save.disconnect(dispatch_uid="test-writes-save")
    post_delete.disconnect(dispatch_uid="test-writes-delete")
