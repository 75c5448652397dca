"""The response cache's exact answers (routing/cache/answers.py, keys.py): lookups, keys, tenant
isolation, statistics and clearing."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from gateway_project.lib.redis_client import async_client
from routing import cache
from tests.routing.cache.support import body, completion, new_id, route

# --- exact cache -------------------------------------------------------------------------


async def test_a_stored_answer_is_served_to_the_same_request():
    r, tenant = route(), new_id()
    assert await cache.lookup(r, tenant, body()) is None
    assert await cache.store(r, tenant, body(), completion()) is True

    answer = await cache.lookup(r, tenant, body())

    assert answer is not None
    assert answer.completion == completion()
    assert answer.usage == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    assert orjson.loads(answer.body()) == completion()
    assert answer.headers()["x-cache"] == "HIT"
    assert answer.headers()["x-cache-kind"] == "exact"
    assert not answer.semantic


async def test_a_different_question_misses():
    r, tenant = route(), new_id()
    await cache.store(r, tenant, body(), completion())

    other = body([{"role": "user", "content": "What is the capital of Spain?"}])

    assert await cache.lookup(r, tenant, other) is None


async def test_nothing_is_cached_on_a_route_with_a_zero_ttl():
    r, tenant = route(ttl=0), new_id()

    assert await cache.store(r, tenant, body(), completion()) is False
    assert await cache.lookup(r, tenant, body()) is None
    stats = await cache.stats(tenant)
    assert (stats["hits"], stats["misses"], stats["stores"]) == (0, 0, 0)


async def test_an_answer_expires_after_the_route_ttl():
    r, tenant = route(ttl=1), new_id()
    await cache.store(r, tenant, body(), completion())
    [key] = [k async for k in async_client().scan_iter(match=f"gw:cache:t{tenant}:*")]

    assert 0 < await async_client().pttl(key) <= 1000
    assert await cache.lookup(r, tenant, body()) is not None
    await asyncio.sleep(1.1)
    assert await cache.lookup(r, tenant, body()) is None


async def test_one_tenant_never_gets_another_tenants_answer():
    shared = route()  # a global route: both tenants may use it
    acme, globex = new_id(), new_id()
    await cache.store(shared, acme, body(), completion("acme's answer"))

    assert await cache.lookup(shared, globex, body()) is None
    await cache.store(shared, globex, body(), completion("globex's answer"))
    acme_answer = await cache.lookup(shared, acme, body())
    globex_answer = await cache.lookup(shared, globex, body())
    assert acme_answer is not None and globex_answer is not None
    assert acme_answer.completion["choices"][0]["message"]["content"] == "acme's answer"
    assert globex_answer.completion["choices"][0]["message"]["content"] == "globex's answer"
    assert acme_answer.key.startswith(f"gw:cache:t{acme}:")
    assert globex_answer.key.startswith(f"gw:cache:t{globex}:")
    # Not only the prefix: the hashes differ too.
    assert acme_answer.key.rsplit(":", 1)[1] != globex_answer.key.rsplit(":", 1)[1]


async def test_key_order_and_delivery_fields_do_not_change_the_key():
    r, tenant = route(), new_id()
    stored = {
        "model": "gpt-test",
        "messages": [{"role": "user", "content": "Hi", "name": "ann"}],
        "temperature": 0,
        "response_format": {"type": "json_object", "schema": {"b": 1, "a": 2}},
    }
    await cache.store(r, tenant, stored, completion())
    same = {
        "response_format": {"schema": {"a": 2, "b": 1}, "type": "json_object"},
        "temperature": 0.0,
        "messages": [{"name": "ann", "content": "Hi", "role": "user"}],
        "model": "gpt-test",
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "someone",
        "metadata": {"trace": "x"},
        "x-gateway": {"metadata": {"feature": "chat"}},
        "n": 1,
    }

    assert await cache.lookup(r, tenant, same) is not None


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.7},
        {"n": 2},
        {"max_tokens": 10},
        {"model": "another-model"},
        {"messages": [{"role": "user", "content": "Hi", "name": "bob"}]},
    ],
)
async def test_fields_that_change_the_answer_change_the_key(change):
    r, tenant = route(), new_id()
    stored = body([{"role": "user", "content": "Hi", "name": "ann"}], temperature=0)
    await cache.store(r, tenant, stored, completion())

    assert await cache.lookup(r, tenant, {**stored, **change}) is None


async def test_a_route_pointed_at_other_models_does_not_serve_the_old_answers():
    before, tenant = route(model="small"), new_id()
    after = route(route_id=before.id, model="large")
    await cache.store(before, tenant, body(), completion())

    assert await cache.lookup(after, tenant, body()) is None


@pytest.mark.parametrize(
    "answer",
    [
        completion(object="chat.completion.chunk"),
        {"error": {"message": "boom"}},
        completion(choices=[]),
        completion(choices=[{"index": 0, "message": {"content": "cut"}, "finish_reason": None}]),
    ],
)
async def test_errors_and_unfinished_answers_are_not_stored(answer):
    r, tenant = route(), new_id()

    assert await cache.store(r, tenant, body(), answer) is False
    assert await cache.lookup(r, tenant, body()) is None


async def test_an_unreachable_redis_means_no_cache_rather_than_an_error(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    r, tenant = route(), new_id()

    assert await cache.store(r, tenant, body(), completion()) is False
    assert await cache.lookup(r, tenant, body()) is None


# --- statistics and clearing -------------------------------------------------------------


async def test_stats_count_hits_misses_and_stores_per_tenant_and_overall():
    r, tenant = route(), new_id()
    before = await cache.stats()

    await cache.lookup(r, tenant, body())
    await cache.store(r, tenant, body(), completion())
    await cache.lookup(r, tenant, body())
    await cache.lookup(r, tenant, body())

    mine = await cache.stats(tenant)
    assert mine["scope"] == "tenant"
    assert {k: mine[k] for k in ("hits", "misses", "stores", "semantic_hits", "entries")} == {
        "hits": 2,
        "misses": 1,
        "stores": 1,
        "semantic_hits": 0,
        "entries": 1,
    }
    assert mine["hit_rate"] == pytest.approx(2 / 3, abs=1e-4)
    after = await cache.stats()
    assert after["hits"] - before["hits"] == 2
    assert after["misses"] - before["misses"] == 1
    assert after["stores"] - before["stores"] == 1
    [row] = [row for row in after["tenants"] if row["tenant_id"] == tenant]
    assert row["hits"] == 2


async def test_clearing_one_tenant_leaves_the_others():
    r, acme, globex = route(), new_id(), new_id()
    await cache.store(r, acme, body(), completion())
    await cache.store(r, globex, body(), completion())

    assert await cache.clear(acme) == 1

    assert await cache.lookup(r, acme, body()) is None
    assert await cache.lookup(r, globex, body()) is not None


async def test_clearing_one_route_clears_it_for_every_tenant():
    cleared, kept, acme, globex = route(), route(), new_id(), new_id()
    for tenant in (acme, globex):
        await cache.store(cleared, tenant, body(), completion())
        await cache.store(kept, tenant, body(), completion())

    assert await cache.clear(route_id=cleared.id) == 2

    assert await cache.lookup(cleared, acme, body()) is None
    assert await cache.lookup(cleared, globex, body()) is None
    assert await cache.lookup(kept, acme, body()) is not None


async def test_clearing_everything():
    r, acme, globex = route(), new_id(), new_id()
    await cache.store(r, acme, body(), completion())
    await cache.store(r, globex, body(), completion())

    assert await cache.clear() >= 2

    assert await cache.lookup(r, acme, body()) is None
    assert await cache.lookup(r, globex, body()) is None
    assert (await cache.stats(acme))["entries"] == 0
