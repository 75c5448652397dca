"""Fixtures for the adapter tests: real HTTP against the fake upstreams, no database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from providers.aiohttp_transport import new_upstream_client


@pytest.fixture
async def http_client() -> AsyncIterator[httpx.AsyncClient]:
    """The adapters' shared client, as the gateway builds it (httpx over the aiohttp
    transport; not pytest-django's `client`)."""
    # trust_env=False: a proxy set in the environment must not swallow 127.0.0.1 calls.
    async with new_upstream_client(trust_env=False) as shared:
        yield shared
