"""The response cache: exact answers by request hash, and (per route) by meaning.

Exact cache. The key is a sha256 over the tenant id, the route id, the route's targets
and the normalised request body: keys sorted at every depth, the sampling numbers
(`temperature`, `top_p`, `frequency_penalty`, `presence_penalty`) as floats so 1 and 1.0
agree, and without the fields that do not change the answer:

    stream, stream_options   how the answer is delivered, not what it says
    user, metadata           the caller's labels (audit and tracking only)
    x-gateway, x_gateway     the gateway's own extension (bypass, tags)
    n                        only when it is 1, the default

A non-streaming and a streaming request therefore share an entry: the stored value is
always the full chat.completion, and `replay_chunks()` turns it into chunks for a stream.
Every key starts with `gw:cache:t<tenant>:r<route>:` and the tenant is hashed too, so an
answer is never served to another tenant, even for a global route they share. An entry
lives `route.cache_ttl_seconds` (0 turns the cache off for the route).

Semantic cache (routes with `semantic_cache`). Only the text of the last message, when
it is a user message, is embedded (routing/embeddings.py). Everything else must match
exactly: the namespace is a hash of the normalised request with that text blanked out,
so a different system prompt, earlier turn, tool list, temperature, ... never matches.
Each (tenant, route, namespace) keeps a Redis list of its most recent entries (at most
GATEWAY_SEMANTIC_CACHE_MAX_ENTRIES, 500 by default), each `expiry ms | exact key hash |
384 float32`; a lookup that misses the exact key reads the list, takes the cosine
similarity of every live entry in numpy, and answers with the best exact entry at or
above `route.semantic_threshold`.

Round trips: an exact lookup is one (a Lua script reads the entry and counts the hit or
the miss); a semantic lookup adds the embedding and, only when a candidate is close
enough, a second round trip that reads it. A store is one (MULTI/EXEC). A failing Redis
or model never fails the request: the cache answers None and logs.

Statistics are Redis hashes, `gw:cache-stats:all` and `gw:cache-stats:t<tenant>`, with
`hits` (exact and semantic), `semantic_hits` (the part of them served by meaning),
`misses` and `stores`.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson
from django.conf import settings

from gateway_project.lib.redis_client import LuaScript, async_client
from routing import embeddings
from routing.snapshot import RouteEntry

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

KEY_VERSION = 1  # bump to orphan every entry when the key or value format changes
PREFIX = "gw:cache:"
STATS_PREFIX = "gw:cache-stats:"
STATS_ALL = f"{STATS_PREFIX}all"
IGNORED_FIELDS = frozenset(
    {"stream", "stream_options", "user", "metadata", "x-gateway", "x_gateway"}
)
FLOAT_FIELDS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")
CACHEABLE_FINISH = frozenset({"stop", "length", "tool_calls", "function_call"})
REPLAY_CHUNK_CHARS = 200
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


@dataclass(frozen=True)
class _Keys:
    exact: str
    digest: str
    tenant_stats: str
    semantic_text: str | None = None
    semantic_list: str | None = None


def enabled(route: RouteEntry) -> bool:
    return route.cache_ttl_seconds > 0


def normalise(body: dict) -> dict:
    """The request as far as it decides the answer (see the module docstring)."""
    clean = {name: value for name, value in body.items() if name not in IGNORED_FIELDS}
    if clean.get("n") == 1:
        del clean["n"]
    for name in FLOAT_FIELDS:
        value = clean.get(name)
        if isinstance(value, int) and not isinstance(value, bool):
            clean[name] = float(value)
    return clean


def _fingerprint(route: RouteEntry) -> str:
    # A route pointed at other models must not keep answering with the old ones' words.
    return ",".join(target.key for target in route.targets)


def _digest(*parts: Any) -> str:
    return hashlib.sha256(orjson.dumps(parts, option=orjson.OPT_SORT_KEYS)).hexdigest()


def _scope(tenant_id: int, route: RouteEntry) -> str:
    return f"{PREFIX}t{int(tenant_id)}:r{int(route.id)}:"


def _exact_key(tenant_id: int, route: RouteEntry, digest: str) -> str:
    return f"{_scope(tenant_id, route)}e:{digest}"


def semantic_text(body: dict) -> str | None:
    """The text that is embedded: the last message's, when it is a user message of text."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    last = messages[-1]
    if not isinstance(last, dict) or last.get("role") != "user":
        return None
    content = last.get("content")
    if isinstance(content, list):
        # An image or an audio part changes the question: such requests match exactly or not at all.
        if not all(isinstance(p, dict) and p.get("type") == "text" for p in content):
            return None
        content = "\n".join(str(p.get("text") or "") for p in content)
    if not isinstance(content, str) or not content.strip():
        return None
    return content.strip()


def _keys(route: RouteEntry, tenant_id: int, body: dict) -> _Keys | None:
    try:
        clean = normalise(body)
        fingerprint = _fingerprint(route)
        digest = _digest(KEY_VERSION, int(tenant_id), int(route.id), fingerprint, clean)
    except (TypeError, ValueError, orjson.JSONEncodeError):
        logger.warning("request not cacheable: its body cannot be hashed", exc_info=True)
        return None
    keys = _Keys(
        exact=_exact_key(tenant_id, route, digest),
        digest=digest,
        tenant_stats=f"{STATS_PREFIX}t{int(tenant_id)}",
    )
    if not route.semantic_cache or not embeddings.available():
        return keys
    text = semantic_text(clean)
    if text is None:
        return keys
    blanked = dict(clean)
    blanked["messages"] = [*clean["messages"][:-1], {**clean["messages"][-1], "content": None}]
    namespace = _digest(
        KEY_VERSION, embeddings.MODEL_NAME, int(tenant_id), int(route.id), fingerprint, blanked
    )
    return _Keys(
        exact=keys.exact,
        digest=digest,
        tenant_stats=keys.tenant_stats,
        semantic_text=text,
        semantic_list=f"{_scope(tenant_id, route)}s:{namespace}",
    )


def _entry_dtype() -> np.dtype:
    import numpy as np

    return np.dtype(
        [("expires", "<i8"), ("digest", "S64"), ("vector", "<f4", (embeddings.DIMENSIONS,))]
    )


def _pack_entry(expires_ms: int, digest: str, vector: np.ndarray) -> bytes:
    import numpy as np

    entry = np.zeros(1, dtype=_entry_dtype())
    entry["expires"] = expires_ms
    entry["digest"] = digest.encode()
    entry["vector"] = vector
    return entry.tobytes()


def _candidates(
    entries: list[bytes], vector: np.ndarray, threshold: float, now_ms: int, limit: int = 3
) -> list[tuple[str, float]]:
    """The best live entries at or above `threshold`, best first: (digest, similarity)."""
    import numpy as np

    dtype = _entry_dtype()
    entries = [entry for entry in entries if len(entry) == dtype.itemsize]
    if not entries:
        return []
    table = np.frombuffer(b"".join(entries), dtype=dtype)
    table = table[table["expires"] > now_ms]
    if not len(table):
        return []
    similarity = table["vector"] @ vector  # both sides are unit length: this is the cosine
    order = np.argsort(-similarity)[:limit]
    found: list[tuple[str, float]] = []
    seen: set[bytes] = set()
    for index in order:
        score = float(similarity[index])
        digest = bytes(table["digest"][index])
        if score < threshold or digest in seen:
            continue
        seen.add(digest)
        found.append((digest.decode(), score))
    return found


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
    keys = _keys(route, tenant_id, body)
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
        matches = _candidates(payload, vector, route.semantic_threshold, int(time.time() * 1000))
        if not matches:
            return None
        result = await _RESOLVE(
            keys=[
                STATS_ALL,
                keys.tenant_stats,
                *(_exact_key(tenant_id, route, digest) for digest, _ in matches),
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
    return _decode(_exact_key(tenant_id, route, digest), raw, similarity=similarity)


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
    keys = _keys(route, tenant_id, body)
    if keys is None:
        return False
    now_ms = int(time.time() * 1000)
    ttl_ms = route.cache_ttl_seconds * 1000
    entry = None
    if keys.semantic_list is not None and keys.semantic_text is not None:
        vector = await embeddings.embed(keys.semantic_text)
        if vector is not None:
            entry = _pack_entry(now_ms + ttl_ms, keys.digest, vector)
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


def _pieces(text: str, size: int = REPLAY_CHUNK_CHARS) -> list[str]:
    """`text` in pieces of about `size` characters, cut after whitespace where possible."""
    pieces: list[str] = []
    while len(text) > size:
        cut = text.rfind(" ", size // 2, size) + 1 or size
        pieces.append(text[:cut])
        text = text[cut:]
    if text or not pieces:
        pieces.append(text)
    return pieces


def replay_chunks(completion: dict, *, include_usage: bool) -> list[dict]:
    """A stored chat.completion as the chat.completion.chunk dicts a stream would have sent:
    per choice the role first, the content (or refusal, or tool calls) in a few pieces,
    then the finish reason; and the usage chunk (no choices) when asked for."""
    base: dict = {
        "id": completion.get("id"),
        "object": "chat.completion.chunk",
        "created": completion.get("created"),
        "model": completion.get("model"),
    }
    for name in ("system_fingerprint", "service_tier"):
        if name in completion:
            base[name] = completion[name]
    if include_usage:
        base["usage"] = None

    def chunk(index: int, delta: dict, finish: str | None = None) -> dict:
        return {
            **base,
            "choices": [
                {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
            ],
        }

    chunks: list[dict] = []
    for position, choice in enumerate(completion.get("choices") or ()):
        index = choice.get("index", position)
        message = choice.get("message") or {}
        chunks.append(chunk(index, {"role": message.get("role") or "assistant", "content": ""}))
        content = message.get("content")
        if isinstance(content, str) and content:
            chunks.extend(chunk(index, {"content": piece}) for piece in _pieces(content))
        refusal = message.get("refusal")
        if isinstance(refusal, str) and refusal:
            chunks.extend(chunk(index, {"refusal": piece}) for piece in _pieces(refusal))
        for call_index, call in enumerate(message.get("tool_calls") or ()):
            function = call.get("function") or {}
            head = {
                "index": call_index,
                "id": call.get("id"),
                "type": call.get("type", "function"),
                "function": {"name": function.get("name"), "arguments": ""},
            }
            chunks.append(chunk(index, {"tool_calls": [head]}))
            arguments = function.get("arguments") or ""
            if arguments:
                chunks.extend(
                    chunk(
                        index,
                        {"tool_calls": [{"index": call_index, "function": {"arguments": piece}}]},
                    )
                    for piece in _pieces(arguments)
                )
        chunks.append(chunk(index, {}, choice.get("finish_reason") or "stop"))
    usage = completion.get("usage")
    if include_usage and isinstance(usage, dict):
        chunks.append({**base, "choices": [], "usage": usage})
    return chunks


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
    stats_key = STATS_ALL if tenant_id is None else f"{STATS_PREFIX}t{int(tenant_id)}"
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
