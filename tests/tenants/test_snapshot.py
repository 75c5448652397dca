"""API keys are read one at a time on first use, then served from memory (KeyDirectory)."""

from __future__ import annotations

import orjson
import pytest
from django.db import OperationalError
from django.test import AsyncClient

from routing.snapshot import snapshots
from tenants import snapshot as snapshot_module
from tests.conftest import count_queries_everywhere
from tests.personas import Personas

pytestmark = pytest.mark.django_db(transaction=True)
USER = [{"role": "user", "content": "Hello there"}]
BOGUS = "gwk_" + "Z" * 48  # the shape of a key, issued to nobody


@pytest.fixture
def keys(personas: Personas, settings) -> list[str]:
    """Three keys of acme's, none of them read yet."""
    settings.GATEWAY_SNAPSHOT_CHECK_SECONDS = 60  # no generation checks inside a test
    acme = personas.acme
    return [acme.plaintext_key] + [acme.issue_key(name=f"key {n}").plaintext for n in (1, 2)]


async def ask(key: str) -> int:
    response = await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps({"model": "echo", "messages": USER}),
        content_type="application/json",
        headers={"authorization": f"Bearer {key}"},
    )
    return response.status_code


def key_reads(queries: list[str]) -> int:
    return sum(1 for sql in queries if 'FROM "tenants_apikey"' in sql)


async def test_a_key_is_read_once_and_then_served_without_a_query(keys):
    assert await ask(keys[0]) == 200  # builds the snapshot, reads keys[0]

    with count_queries_everywhere() as first_use:
        assert await ask(keys[1]) == 200
    with count_queries_everywhere() as warm:
        assert await ask(keys[1]) == 200
        assert await ask(keys[0]) == 200

    assert key_reads(first_use.queries) == 1
    assert warm.queries == []


async def test_an_unknown_key_is_refused_and_remembered(keys):
    assert await ask(keys[0]) == 200

    with count_queries_everywhere() as queries:
        assert await ask(BOGUS) == 401
        assert await ask(BOGUS) == 401

    assert key_reads(queries.queries) == 1


async def test_the_directory_forgets_its_oldest_keys_past_its_capacity(keys, settings):
    settings.GATEWAY_KEY_CACHE_SIZE = 2
    snapshots.invalidate()  # the next snapshot gets the smaller directory

    for key in keys:
        assert await ask(key) == 200
    directory = (await snapshots.aget()).tenancy.keys
    assert len(directory) == 2

    with count_queries_everywhere() as queries:
        assert await ask(keys[0]) == 200  # forgotten first: read again, still valid

    assert key_reads(queries.queries) == 1
    assert len(directory) == 2


async def test_a_database_outage_during_the_key_lookup_is_a_503_in_the_envelope(keys, monkeypatch):
    def unreachable(prefix, tenants):
        raise OperationalError("connection refused")

    assert await ask(keys[0]) == 200  # the snapshot itself is built and warm
    monkeypatch.setattr(snapshot_module, "load_key_entry", unreachable)
    response = await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps({"model": "echo", "messages": USER}),
        content_type="application/json",
        headers={"authorization": f"Bearer {keys[1]}"},
    )

    assert response.status_code == 503
    error = orjson.loads(response.content)["error"]
    assert error["code"] == "service_unavailable"
    assert "database" in error["message"]
    assert await ask(keys[0]) == 200  # keys already known keep working
