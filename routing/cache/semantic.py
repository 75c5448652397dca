"""The semantic cache's entries: packing an embedding with its expiry and exact key, and
finding the stored entries close enough to a new question.

Each (tenant, route, namespace) keeps a Redis list of its most recent entries (at most
GATEWAY_SEMANTIC_CACHE_MAX_ENTRIES, 500 by default), each `expiry ms | exact key hash |
384 float32`; a lookup that misses the exact key reads the list, takes the cosine
similarity of every live entry in numpy, and answers with the best exact entry at or
above `route.semantic_threshold`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from routing.cache import embeddings

if TYPE_CHECKING:
    import numpy as np


def _entry_dtype() -> np.dtype:
    import numpy as np

    return np.dtype(
        [("expires", "<i8"), ("digest", "S64"), ("vector", "<f4", (embeddings.DIMENSIONS,))]
    )


def pack_entry(expires_ms: int, digest: str, vector: np.ndarray) -> bytes:
    import numpy as np

    entry = np.zeros(1, dtype=_entry_dtype())
    entry["expires"] = expires_ms
    entry["digest"] = digest.encode()
    entry["vector"] = vector
    return entry.tobytes()


def candidates(
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
