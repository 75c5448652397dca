"""The semantic cache (routing/cache/semantic.py, embeddings.py): answers by meaning."""

from __future__ import annotations

import asyncio
import threading

import pytest

from routing import cache
from routing.cache import embeddings
from tests.routing.cache.support import body, completion, needs_model, new_id, route

# --- semantic cache ----------------------------------------------------------------------


def ask(text: str, system: str | None = None) -> dict:
    messages = [{"role": "system", "content": system}] if system else []
    return body([*messages, {"role": "user", "content": text}])


@pytest.fixture
async def model():
    """The embedding model, loaded: the proxy only starts loading it, in the background."""
    loading = embeddings.warm_up()
    try:
        if loading is None:
            raise LookupError("no embedding model")
        await asyncio.wrap_future(loading)
    except Exception:
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
