"""The `gov` fixture: a Governor of its own over counters reset before and after."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest

from billing.counters import Governor
from tests.conftest import forget_governance_counters


@pytest.fixture
async def gov() -> AsyncIterator[Governor]:
    governor = Governor()
    await forget_governance_counters()
    yield governor
    await forget_governance_counters()
    await governor._client().aclose()
    # Rebuilds read the ledger on the loop's default executor: let its threads (and their
    # database connections) go now, or the test database cannot be dropped at the end.
    await asyncio.get_running_loop().shutdown_default_executor()
    gc.collect()
