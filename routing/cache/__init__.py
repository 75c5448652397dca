"""The response cache: what the proxy and the management side use of it.

`answers.py` keeps and finds answers in Redis (exact, and by meaning on routes that ask
for it), `keys.py` says what part of a request decides its answer, `semantic.py` and
`embeddings.py` are the by-meaning half, `replay.py` turns a stored answer into stream
chunks. `admin.py` (clearing) and `api.py` (statistics) are the management side and are
not imported here: the proxy path never loads admin or DRF code.
"""

from __future__ import annotations

from routing.cache.answers import (
    MISS_HEADERS,
    CachedAnswer,
    cacheable,
    clear,
    lookup,
    stats,
    store,
)
from routing.cache.keys import enabled
from routing.cache.replay import replay_chunks

__all__ = [
    "MISS_HEADERS",
    "CachedAnswer",
    "cacheable",
    "clear",
    "enabled",
    "lookup",
    "replay_chunks",
    "stats",
    "store",
]
