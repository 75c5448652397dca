"""The admission tests' fixtures: fresh governance counters around every test, the
personas with prices of many decimals, and the keys the cases name. Here, not in the proxy
directory's conftest, so that they replace `personas` for these tests only."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest

from tests import factories
from tests.conftest import forget_governance_counters
from tests.personas import Personas, make_personas


@pytest.fixture(autouse=True)
async def fresh_governance() -> AsyncIterator[None]:
    """Counters live in Redis (or fakeredis), not in the test database: start from none."""
    await forget_governance_counters()
    yield
    await forget_governance_counters()
    # Budget rebuilds and alerts use the loop's default executor: let its threads (and their
    # database connections) go now, or the test database cannot be dropped at the end.
    await asyncio.get_running_loop().shutdown_default_executor()
    gc.collect()


@pytest.fixture
def personas(transactional_db) -> Personas:
    """The personas, with prices of many decimals (every cost has ten of them, and must add
    up exactly) and a second global route, `other`, that no limit here names."""
    personas = make_personas(input_per_million="1.234567", output_per_million="2.345678")
    factories.make_route("other", personas.model)
    return personas


@pytest.fixture
def keys(personas: Personas) -> dict[str, str]:
    """The keys the cases below name: acme's, a second key of acme's, and globex's."""
    return {
        "acme": personas.acme.plaintext_key,
        "acme's second key": personas.acme.issue_key(name="second key").plaintext,
        "globex": personas.globex.plaintext_key,
    }
