"""Trying one target: retries with backoff and jitter, under a retry budget.

A retryable failure (connect error, 429, 5xx, 529) is retried on the same target up to
its provider's `max_retries`, waiting an exponential backoff with full jitter, or the
upstream's own `retry-after` when it gave one (if that is longer than MAX_RETRY_WAIT, the
gateway moves to the next target instead of holding the client). Timeouts are not
retried on the same target: a stalled upstream would double the client's wait.

The retry budget keeps retries from multiplying load during an outage: each target earns
RETRY_RATIO (20%) of a retry per first attempt, plus a small floor for quiet periods; a
retry spends one. When the budget is empty, failures fail over at once.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass

from providers.base import Target, UpstreamError

RETRYABLE_KINDS = frozenset({"connect_error", "rate_limited", "server_error"})
RETRY_RATIO = 0.2
FLOOR_PER_SECOND = 0.1  # about one retry per 10 s even with no traffic
MAX_TOKENS = 10.0
BASE_DELAY = 0.05
MAX_DELAY = 2.0
MAX_RETRY_WAIT = 5.0

_rng = random.Random()


@dataclass
class _Bucket:
    tokens: float = MAX_TOKENS / 2
    updated: float = 0.0


class RetryBudget:
    """Per-target retry allowance (per process: an outage is seen by every process alike)."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}

    def _bucket(self, key: str, now: float) -> _Bucket:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = _Bucket(updated=now)
        elapsed = now - bucket.updated
        if elapsed > 0:
            bucket.tokens = min(MAX_TOKENS, bucket.tokens + elapsed * FLOOR_PER_SECOND)
            bucket.updated = now
        return bucket

    def on_attempt(self, key: str, now: float | None = None) -> None:
        bucket = self._bucket(key, time.monotonic() if now is None else now)
        bucket.tokens = min(MAX_TOKENS, bucket.tokens + RETRY_RATIO)

    def try_spend(self, key: str, now: float | None = None) -> bool:
        bucket = self._bucket(key, time.monotonic() if now is None else now)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return True
        return False


retry_budget = RetryBudget()


def retry_delay(error: UpstreamError, retry_number: int) -> float | None:
    """Seconds to wait before retry `retry_number` (1-based), or None to fail over now."""
    if error.kind not in RETRYABLE_KINDS:
        return None
    if error.retry_after is not None:
        return error.retry_after if error.retry_after <= MAX_RETRY_WAIT else None
    ceiling = min(MAX_DELAY, BASE_DELAY * (2 ** (retry_number - 1)))
    return _rng.uniform(0, ceiling)


def may_retry(target: Target, error: UpstreamError, retries_done: int) -> float | None:
    """The wait before retrying `target` after `error`, or None to move on."""
    if retries_done >= target.max_retries:
        return None
    delay = retry_delay(error, retries_done + 1)
    if delay is None or not retry_budget.try_spend(target.key):
        return None
    return delay
