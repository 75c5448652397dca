"""Fixtures for the tenant tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db.models.signals import post_save


@pytest.fixture
def saved() -> Iterator[list[str]]:
    """The models saved (post_save, which invalidates the proxy's snapshot) during the test."""
    seen: list[str] = []

    def record(sender: type, **kwargs: object) -> None:
        seen.append(sender.__name__)

    post_save.connect(record, weak=False, dispatch_uid="test-tenants-saved")
    yield seen
    post_save.disconnect(dispatch_uid="test-tenants-saved")
