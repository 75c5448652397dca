"""The response cache in Redis: exact answers by request hash, and (per route) by meaning.

What a key is made of is `routing/cache/keys.py`; the semantic entries and their
similarity search are `routing/cache/semantic.py`, the embeddings
`routing/cache/embeddings.py`. The stored value is always the full chat.completion
(`replay.replay_chunks()` turns it into chunks for a stream). An entry lives
`route.cache_ttl_seconds` (0 turns the cache off for the route).

Round trips: an exact lookup is one (a Lua script reads the entry and counts the hit or
the miss); a semantic lookup adds the embedding and, only when a candidate is close
enough, a second round trip that reads it. A store is one (MULTI/EXEC). A failing Redis
or model never fails the request: the cache answers None and logs.

Statistics are Redis hashes, `gw:cache-stats:all` and `gw:cache-stats:t<tenant>`, with
`hits` (exact and semantic), `semantic_hits` (the part of them served by meaning),
`misses` and `stores`.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import orjson
from django.conf import settings

from gateway_project.lib.redis_client import LuaScript, async_client
from routing.cache import embeddings
from routing.cache.keys import (
    PREFIX,
    STATS_ALL,
    STATS_PREFIX,
    enabled,
    exact_key,
    keys_for,
    tenant_stats_key,
)
from routing.cache.semantic import candidates, pack_entry
from routing.snapshot import RouteEntry

logger = logging.getLogger(__name__)

CACHEABLE_FINISH = frozenset({"stop", "length", "tool_calls", "function_call"})
MISS_HEADERS = {"x-cache": "MISS"}

# KEYS: exact entry, global stats, tenant stats[, semantic list]. ARGV[1]: read the list
# on a miss ("1") or not. A hit returns {1, value}; a miss {0, list entries}.
_LOOKUP = LuaScript(
    "cache_lookup",
    """
local value = redis.call('GET', KEYS[1])
if value then
  redis.call('HINCRBY', KEYS[2], 'hits', 1)
  redis.call('HINCRBY', KEYS[3], 'hits', 1)
  return {1, value}
end
redis.call('HINCRBY', KEYS[2], 'misses', 1)
redis.call('HINCRBY', KEYS[3], 'misses', 1)
if ARGV[1] == '1' then
  return {0, redis.call('LRANGE', KEYS[4], 0, -1)}
end
return {0, {}}
""",
)

# KEYS: global stats, tenant stats, candidate entries best first. The first that still
# exists is returned with its position, and the miss counted by _LOOKUP becomes a hit.
_RESOLVE = LuaScript(
    "cache_resolve",
    """
for i = 3, #KEYS do
  local value = redis.call('GET', KEYS[i])
  if value then
    for s = 1, 2 do
      redis.call('HINCRBY', KEYS[s], 'misses', -1)
      redis.call('HINCRBY', KEYS[s], 'hits', 1)
      redis.call('HINCRBY', KEYS[s], 'semantic_hits', 1)
    end
    return {i - 2, value}
  end
end
return nil
""",
)


@dataclass(frozen=True)
class CachedAnswer:
    """A stored chat.completion, as served from the cache."""

    completion: dict
    key: str
    stored_at_ms: int
    semantic: bool = False
    similarity: float | None = None

    @property
    def usage(self) -> dict | None:
        usage = self.completion.get("usage")
        return usage if isinstance(usage, dict) else None

    @property
    def age_seconds(self) -> int:
        return max(0, int(time.time() - self.stored_at_ms / 1000))

    def body(self) -> bytes:
        return orjson.dumps(self.completion)

    def headers(self) -> dict[str, str]:
        headers = {
            "x-cache": "HIT",
            "x-cache-kind": "semantic" if self.semantic else "exact",
            "age": str(self.age_seconds),
        }
        if self.similarity is not None:
            headers["x-cache-similarity"] = f"{self.similarity:.4f}"
        return headers


def _decode(key: str, raw: bytes, *, similarity: float | None = None) -> CachedAnswer | None:
    try:
        value = orjson.loads(raw)
        return CachedAnswer(
            completion=value["completion"],
            key=key,
            stored_at_ms=int(value["stored_at_ms"]),
            semantic=similarity is not None,
            similarity=similarity,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        logger.warning("unreadable cache entry %s ignored", key)
        return None


async def lookup(route: RouteEntry, tenant_id: int, body: dict) -> CachedAnswer | None:
    """The cached answer to `body` on `route` for this tenant, or None (miss, cache off for
    the route, or Redis unavailable). Counts the hit or the miss."""
    if not enabled(route):
        return None
    keys = keys_for(route, tenant_id, body)
    if keys is None:
        return None
    semantic = keys.semantic_list is not None and embeddings.ready()
    if keys.semantic_list is not None and not semantic:
        embeddings.warm_up()  # the model loads in the background; this request goes without
    try:
        found, payload = await _LOOKUP(
            keys=[keys.exact, STATS_ALL, keys.tenant_stats, keys.semantic_list or keys.exact],
            args=["1" if semantic else "0"],
            client=async_client(),
        )
        if found:
            return _decode(keys.exact, payload)
        if not semantic or not payload:
            return None
        assert keys.semantic_text is not None
        vector = await embeddings.embed(keys.semantic_text)
        if vector is None:
            return None
        matches = candidates(payload, vector, route.semantic_threshold, int(time.time() * 1000))
        if not matches:
            return None
        result = await _RESOLVE(
            keys=[
                STATS_ALL,
                keys.tenant_stats,
                *(exact_key(tenant_id, route, digest) for digest, _ in matches),
            ],
            client=async_client(),
        )
    except Exception:
        logger.warning("cache lookup failed; answering without the cache", exc_info=True)
        return None
    if not result:
        return None
    position, raw = result
    digest, similarity = matches[int(position) - 1]
    return _decode(exact_key(tenant_id, route, digest), raw, similarity=similarity)


def cacheable(completion: object) -> bool:
    """Only whole, successful answers are kept (not errors, not cut-off streams)."""
    if not isinstance(completion, dict) or completion.get("object") != "chat.completion":
        return False
    choices = completion.get("choices")
    return (
        isinstance(choices, list)
        and bool(choices)
        and all(isinstance(c, dict) and c.get("finish_reason") in CACHEABLE_FINISH for c in choices)
    )


async def store(route: RouteEntry, tenant_id: int, body: dict, completion: dict) -> bool:
    """Keep `completion` as the answer to `body` for the route's TTL; True if stored."""
    if not enabled(route) or not cacheable(completion):
        return False
    keys = keys_for(route, tenant_id, body)
    if keys is None:
        return False
    now_ms = int(time.time() * 1000)
    ttl_ms = route.cache_ttl_seconds * 1000
    entry = None
    if keys.semantic_list is not None and keys.semantic_text is not None:
        vector = await embeddings.embed(keys.semantic_text)
        if vector is not None:
            entry = pack_entry(now_ms + ttl_ms, keys.digest, vector)
    value = orjson.dumps({"stored_at_ms": now_ms, "completion": completion})
    try:
        async with async_client().pipeline(transaction=True) as pipe:
            pipe.set(keys.exact, value, px=ttl_ms)
            pipe.hincrby(STATS_ALL, "stores", 1)
            pipe.hincrby(keys.tenant_stats, "stores", 1)
            if entry is not None:
                size = getattr(settings, "GATEWAY_SEMANTIC_CACHE_MAX_ENTRIES", 500)
                pipe.lpush(keys.semantic_list, entry)
                pipe.ltrim(keys.semantic_list, 0, size - 1)
                pipe.pexpire(keys.semantic_list, ttl_ms)
            await pipe.execute()
    except Exception:
        logger.warning("cache store failed", exc_info=True)
        return False
    return True


async def clear(tenant_id: int | None = None, *, route_id: int | None = None) -> int:
    """Delete cached answers (all, one tenant's, one route's, or both); how many keys went.
    Walks the keyspace with SCAN, so Redis is never blocked; the statistics stay."""
    tenant = "*" if tenant_id is None else str(int(tenant_id))
    route = "*" if route_id is None else str(int(route_id))
    pattern = f"{PREFIX}t{tenant}:r{route}:*"
    client = async_client()
    deleted = 0
    batch: list[bytes] = []
    async for key in client.scan_iter(match=pattern, count=1000):
        batch.append(key)
        if len(batch) >= 500:
            deleted += await client.unlink(*batch)
            batch = []
    if batch:
        deleted += await client.unlink(*batch)
    return deleted


def _counters(raw: dict) -> dict[str, int | float]:
    values = {(k.decode() if isinstance(k, bytes) else k): int(v) for k, v in raw.items()}
    hits, misses = values.get("hits", 0), values.get("misses", 0)
    return {
        "hits": hits,
        "semantic_hits": values.get("semantic_hits", 0),
        "misses": misses,
        "stores": values.get("stores", 0),
        "hit_rate": round(hits / (hits + misses), 4) if hits + misses else 0.0,
    }


async def stats(tenant_id: int | None = None) -> dict:
    """Counters and entry counts, for every tenant together or for one.

    Entry counts come from a SCAN of the cache keys: fine for an admin page, not for the
    proxy path.
    """
    client = async_client()
    stats_key = STATS_ALL if tenant_id is None else tenant_stats_key(tenant_id)
    result: dict[str, Any] = {
        "scope": "global" if tenant_id is None else "tenant",
        "tenant_id": tenant_id,
        **_counters(await client.hgetall(stats_key)),
    }
    tenant = "*" if tenant_id is None else str(int(tenant_id))
    entries = 0
    lists: list[bytes] = []
    async for key in client.scan_iter(match=f"{PREFIX}t{tenant}:r*", count=1000):
        if b":e:" in key:
            entries += 1
        elif b":s:" in key:
            lists.append(key)
    semantic_entries = 0
    if lists:
        async with client.pipeline(transaction=False) as pipe:
            for key in lists:
                pipe.llen(key)
            semantic_entries = sum(await pipe.execute())
    result["entries"] = entries
    result["semantic_entries"] = semantic_entries
    if tenant_id is None:
        tenants = []
        async for key in client.scan_iter(match=f"{STATS_PREFIX}t*", count=1000):
            tenants.append((int(key.decode().rsplit(":t", 1)[1]), await client.hgetall(key)))
        result["tenants"] = [{"tenant_id": tid, **_counters(raw)} for tid, raw in sorted(tenants)]
    return result
