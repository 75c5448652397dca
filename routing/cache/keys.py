"""Cache keys: what part of a request decides its answer, and where that answer is kept.

The exact key is a sha256 over the tenant id, the route id, the route's targets and the
normalised request body: keys sorted at every depth, the sampling numbers
(`temperature`, `top_p`, `frequency_penalty`, `presence_penalty`) as floats so 1 and 1.0
agree, and without the fields that do not change the answer:

    stream, stream_options   how the answer is delivered, not what it says
    user, metadata           the caller's labels (audit and tracking only)
    x-gateway, x_gateway     the gateway's own extension (bypass, tags)
    n                        only when it is 1, the default

A non-streaming and a streaming request therefore share an entry. Every key starts with
`gw:cache:t<tenant>:r<route>:` and the tenant is hashed too, so an answer is never
served to another tenant, even for a global route they share.

The semantic namespace (routes with `semantic_cache`) is a hash of the normalised
request with the embedded text (the last user message) blanked out, so a different
system prompt, earlier turn, tool list, temperature, ... never matches by meaning.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from typing import Any

import orjson

from routing.cache import embeddings
from routing.snapshot import RouteEntry

logger = logging.getLogger(__name__)

KEY_VERSION = 1  # bump to orphan every entry when the key or value format changes
PREFIX = "gw:cache:"
STATS_PREFIX = "gw:cache-stats:"
STATS_ALL = f"{STATS_PREFIX}all"
IGNORED_FIELDS = frozenset(
    {"stream", "stream_options", "user", "metadata", "x-gateway", "x_gateway"}
)
FLOAT_FIELDS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")


@dataclass(frozen=True)
class CacheKeys:
    """The Redis keys one request reads and writes."""

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


def exact_key(tenant_id: int, route: RouteEntry, digest: str) -> str:
    return f"{_scope(tenant_id, route)}e:{digest}"


def tenant_stats_key(tenant_id: int) -> str:
    return f"{STATS_PREFIX}t{int(tenant_id)}"


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


def keys_for(route: RouteEntry, tenant_id: int, body: dict) -> CacheKeys | None:
    """The keys of `body` on `route` for this tenant; None when the body cannot be hashed."""
    try:
        clean = normalise(body)
        fingerprint = _fingerprint(route)
        digest = _digest(KEY_VERSION, int(tenant_id), int(route.id), fingerprint, clean)
    except (TypeError, ValueError, orjson.JSONEncodeError):
        logger.warning("request not cacheable: its body cannot be hashed", exc_info=True)
        return None
    keys = CacheKeys(
        exact=exact_key(tenant_id, route, digest),
        digest=digest,
        tenant_stats=tenant_stats_key(tenant_id),
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
    return CacheKeys(
        exact=keys.exact,
        digest=digest,
        tenant_stats=keys.tenant_stats,
        semantic_text=text,
        semantic_list=f"{_scope(tenant_id, route)}s:{namespace}",
    )
