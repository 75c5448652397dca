"""Fixtures for the adapter tests: real HTTP against the fake upstreams, no database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    """The adapters' shared client, as the gateway owns it (not pytest-django's `client`)."""
    # trust_env=False: a proxy set in the environment must not swallow 127.0.0.1 calls.
    async with httpx.AsyncClient(trust_env=False) as shared:
        yield shared
