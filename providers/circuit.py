"""Circuit breakers per upstream target (`Target.key`), shared by every process via Redis.

A circuit is **closed** (requests go through) until the target fails
`circuit_failure_threshold` times in a row, or fails at least FAILURE_RATE of at least
MIN_ATTEMPTS attempts within WINDOW_SECONDS. It is then **open**: the target is skipped
without waiting. After `circuit_cooldown_s` it is **half-open**: exactly one request,
across every process, is let through as a probe (granted atomically in Redis, with a
lease so a probe whose process died is granted again later). The probe's success closes
the circuit; its failure opens it for another cool-down.

The hot path pays almost nothing. `allow()` / `allows()` answer from a process-local
copy of the states, refreshed at most every GATEWAY_CIRCUIT_CACHE_SECONDS with one Lua
call for every stale key at once; only an open circuit whose cool-down is over costs a
round trip (the probe grant). `record()` writes nothing for a success on a circuit last
seen closed with no failures; a failure or a transition is one Lua call. Successes are
therefore only counted in the failure-rate window while the window holds failures: the
rate is that of the attempts since the first recent failure, which is what matters.

When Redis cannot be reached, every circuit counts as closed (requests are never refused
because of the breaker), records are dropped, Redis is left alone for REDIS_RETRY_SECONDS,
and the problem is logged at most every LOG_EVERY_SECONDS.

The Redis side (the circuit.lua calls, the settings that tune them) is
providers/circuit_lua.py.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import time
import uuid
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from asgiref.sync import async_to_sync

from gateway_project.lib import redis_client
from providers import circuit_lua as lua
from providers.base import Target
from providers.circuit_lua import KEY_PREFIX, Tuning

logger = logging.getLogger(__name__)

REDIS_RETRY_SECONDS = 1.0
LOG_EVERY_SECONDS = 30.0
FORGET_AFTER_SECONDS = 600.0  # cached keys no request asked about for this long are dropped
# Not the target's fault: the upstream answered (a 400 for this request) or nobody waited
# for the answer. They neither count nor close; a probe that ends so is handed back.
NEUTRAL_KINDS = frozenset({"client_error", "cancelled"})

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"
# The probes granted to the current request (task), so only their answers decide.
_probes: contextvars.ContextVar[dict[tuple[int, str], str] | None] = contextvars.ContextVar(
    "circuit_probes", default=None
)


class BreakerUnavailable(Exception):
    """The circuit states could not be read (Redis unreachable)."""


@dataclass(frozen=True)
class CircuitState:
    key: str
    state: str  # closed | open | half_open
    consecutive_failures: int
    window_failures: int
    window_attempts: int
    opened_at: datetime | None
    next_probe_at: datetime | None  # open: end of the cool-down; probing: end of the lease
    probe_in_flight: bool = False

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for name in ("opened_at", "next_probe_at"):
            value = data[name]
            data[name] = value.isoformat() if value is not None else None
        return data


def target_key(provider: str, model: str) -> str:
    """`Target.key` from names (the admin and health views have rows, not targets)."""
    return f"{provider}/{model}"


def _when(ms: int) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if ms else None


class Breaker:
    """The circuit breakers of one process (use the module's `breaker`).

    `redis_url` defaults to settings.REDIS_URL (empty: the in-process fakeredis); `clock`
    returns wall-clock seconds and is shared by every process's view of cool-downs.
    """

    def __init__(
        self,
        *,
        redis_url: str | None = None,
        clock: Callable[[], float] = time.time,
        cache_seconds: float | None = None,
        window_seconds: float | None = None,
        min_attempts: int | None = None,
        failure_rate: float | None = None,
    ) -> None:
        self.redis_url = redis_url
        self.clock = clock
        self._tuning = Tuning(cache_seconds, window_seconds, min_attempts, failure_rate)
        self._entries: dict[str, lua.CachedState] = {}
        self._refreshing: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Task] = (
            weakref.WeakKeyDictionary()
        )
        self._down_until = 0.0
        self._last_log = float("-inf")

    @property
    def cache_seconds(self) -> float:
        return self._tuning.cache_seconds()

    # --- the hot path --------------------------------------------------------------------------
    async def allow(self, target: Target) -> bool:
        """Whether to try `target` now; call it right before each attempt, then `record()`.

        True for a closed circuit, False for an open one; when the cool-down is over, True
        for exactly one caller across every process (the probe).
        """
        return (await self.allows([target]))[target.key]

    async def allows(self, targets: Iterable[Target]) -> dict[str, bool]:
        """`allow()` for several targets in one go (every probe due is granted: pass only
        targets that will be tried, or hand unused probes back with `release()`)."""
        unique = {target.key: target for target in targets}
        now = self.clock()
        if now < self._down_until:
            return dict.fromkeys(unique, True)
        if not await self._ensure_fresh(list(unique), now):
            return dict.fromkeys(unique, True)
        now_ms = int(now * 1000)
        result: dict[str, bool] = {}
        due: list[Target] = []
        for key, target in unique.items():
            entry = self._entries.get(key)
            if entry is None or entry.code == lua.CLOSED_CODE:
                result[key] = True
            elif (entry.code == lua.OPEN_CODE and now_ms >= entry.probe_ms) or (
                entry.code == lua.PROBING_CODE and now_ms >= entry.lease_ms
            ):
                due.append(target)
            else:
                result[key] = False
        if due:
            result.update(await self._grant(due, now))
        return result

    async def refresh(self, targets: Iterable[Target]) -> None:
        """Bring the cached states of `targets` up to date (at most one round trip, none
        while they are fresh), so `is_open()` can answer for all of them. Never raises."""
        now = self.clock()
        if now >= self._down_until:
            await self._ensure_fresh(list(dict.fromkeys(t.key for t in targets)), now)

    def is_open(self, target: Target) -> bool:
        """Whether the last known state says to skip `target` (no I/O: for ordering).

        False once the cool-down is over: the target may be this request's probe, which
        `allow()` then decides.
        """
        entry = self._entries.get(target.key)
        if entry is None or entry.code == lua.CLOSED_CODE:
            return False
        now_ms = int(self.clock() * 1000)
        return now_ms < (entry.probe_ms if entry.code == lua.OPEN_CODE else entry.lease_ms)

    async def record(self, target: Target, *, ok: bool, kind: str = "") -> None:
        """The outcome of one attempt on `target` (`kind` as in UpstreamError.kind).

        Never raises. A success on a circuit last seen closed and clean costs nothing.
        """
        key = target.key
        token = self._take_probe(key)
        outcome = "ok" if ok else ("release" if kind in NEUTRAL_KINDS else "fail")
        if token is None:
            entry = self._entries.get(key)
            if outcome == "release":
                return
            if entry is not None and (
                entry.clean if outcome == "ok" else entry.code != lua.CLOSED_CODE
            ):
                # Clean and closed: nothing to reset. Open or probing (and not our probe):
                # a late answer to a request sent before it opened decides nothing.
                return
        now = self.clock()
        if now < self._down_until:
            return
        try:
            raw = await lua.record(
                self._client(), self._tuning, target, now, outcome=outcome, token=token
            )
        except Exception as exc:
            self._unavailable(exc, now)
            return
        self._store(key, raw[:7], now)

    async def release(self, target: Target) -> None:
        """Hand back a probe granted by `allow()` that will not be sent after all."""
        await self.record(target, ok=False, kind="cancelled")

    # --- admin, health and tests -----------------------------------------------------------------
    async def states(
        self, keys: Iterable[str] | None = None, *, client: Any = None
    ) -> list[CircuitState]:
        """Fresh from Redis: the given keys (unknown ones are closed), or every key it holds.

        Raises BreakerUnavailable when Redis cannot be reached.
        """
        client = client if client is not None else self._client()
        now = self.clock()
        try:
            if keys is None:
                found = [k async for k in client.scan_iter(match=f"{KEY_PREFIX}*", count=500)]
                keys = sorted(
                    (k.decode() if isinstance(k, bytes) else k)[len(KEY_PREFIX) :] for k in found
                )
            keys = list(keys)
            raw = await self._read(keys, now, client) if keys else []
        except Exception as exc:
            if redis_client.is_unavailable(exc):
                raise BreakerUnavailable(str(exc)) from exc
            raise
        now_ms = int(now * 1000)
        out = []
        for index, key in enumerate(keys):
            code, failures, window_failures, window_attempts, opened, probe, lease = raw[
                8 * index : 8 * index + 7
            ]
            if code == lua.CLOSED_CODE:
                state, next_probe, probing = CLOSED, 0, False
            elif code == lua.OPEN_CODE:
                state, next_probe, probing = (OPEN if now_ms < probe else HALF_OPEN), probe, False
            else:
                state, next_probe, probing = HALF_OPEN, lease, now_ms < lease
            out.append(
                CircuitState(
                    key=key,
                    state=state,
                    consecutive_failures=failures,
                    window_failures=window_failures,
                    window_attempts=window_attempts,
                    opened_at=_when(opened),
                    next_probe_at=_when(next_probe),
                    probe_in_flight=probing,
                )
            )
        return out

    async def reset(self, keys: Iterable[str], *, client: Any = None) -> None:
        """Close these circuits and forget their failures (every process sees it within
        GATEWAY_CIRCUIT_CACHE_SECONDS). Raises BreakerUnavailable when Redis is away."""
        keys = list(keys)
        if not keys:
            return
        client = client if client is not None else self._client()
        now = self.clock()
        try:
            await lua.reset(client, self._tuning, keys, now)
        except Exception as exc:
            if redis_client.is_unavailable(exc):
                raise BreakerUnavailable(str(exc)) from exc
            raise
        for key in keys:
            self._store(key, list(lua.CLEAN), now)

    def forget(self) -> None:
        """Drop this process's cached states and any Redis back-off (tests)."""
        self._entries.clear()
        self._down_until = 0.0

    # --- internals -------------------------------------------------------------------------------
    def _client(self) -> Any:
        return redis_client.async_client(self.redis_url)

    def _fresh(self, key: str, now: float) -> bool:
        entry = self._entries.get(key)
        # A clock that went backwards makes the copy stale rather than fresh for ever.
        return entry is not None and 0 <= now - entry.fetched < self.cache_seconds

    async def _ensure_fresh(self, keys: list[str], now: float) -> bool:
        for entry_key in keys:
            entry = self._entries.get(entry_key)
            if entry is not None:
                entry.used = now
        loop = asyncio.get_running_loop()
        for _ in range(2):
            stale = [key for key in keys if not self._fresh(key, now)]
            if not stale:
                return True
            # One refresh at a time per loop: concurrent requests wait for it.
            task = self._refreshing.get(loop)
            if task is None or task.done():
                task = loop.create_task(self._refresh(stale, now))
                self._refreshing[loop] = task
            if not await asyncio.shield(task):
                return False
        return True  # still unknown (keys first seen mid-refresh): closed until next time

    async def _refresh(self, wanted: list[str], now: float) -> bool:
        stale = {key for key, entry in self._entries.items() if not self._fresh(key, now)}
        for key in list(stale):
            if now - self._entries[key].used > FORGET_AFTER_SECONDS:
                del self._entries[key]
                stale.discard(key)
        keys = list(dict.fromkeys([*wanted, *sorted(stale)]))
        try:
            raw = await self._read(keys, now, self._client())
        except Exception as exc:
            self._unavailable(exc, now)
            return False
        for index, key in enumerate(keys):
            self._store(key, raw[8 * index : 8 * index + 7], now)
        return True

    async def _read(self, keys: list[str], now: float, client: Any) -> list[int]:
        return await lua.read(client, self._tuning, keys, now)

    async def _grant(self, targets: list[Target], now: float) -> dict[str, bool]:
        token = f"{os.getpid()}:{uuid.uuid4().hex[:16]}"
        try:
            raw = await lua.probe(self._client(), self._tuning, targets, now, token=token)
        except Exception as exc:
            self._unavailable(exc, now)
            return {target.key: True for target in targets}
        granted: dict[str, bool] = {}
        held = dict(_probes.get() or {})
        for index, target in enumerate(targets):
            values = raw[8 * index : 8 * index + 8]
            self._store(target.key, values[:7], now)
            granted[target.key] = bool(values[7])
            if values[7] and values[0] == lua.PROBING_CODE:
                held[(id(self), target.key)] = token
        _probes.set(held)
        return granted

    def _take_probe(self, key: str) -> str | None:
        held = _probes.get()
        if not held or (id(self), key) not in held:
            return None
        rest = dict(held)
        token = rest.pop((id(self), key))
        _probes.set(rest)
        return token

    def _store(self, key: str, values: Sequence[int], now: float) -> None:
        entry = self._entries.get(key)
        used = entry.used if entry is not None else now
        self._entries[key] = lua.CachedState(*values, fetched=now, used=used)  # type: ignore[misc]  # the script's reply, unpacked

    def _unavailable(self, exc: Exception, now: float) -> None:
        if redis_client.is_unavailable(exc):
            self._down_until = now + REDIS_RETRY_SECONDS
            message = "circuit breaker: Redis unreachable, treating circuits as closed: %s"
        else:
            message = "circuit breaker: unexpected error, treating circuits as closed: %r"
        if now - self._last_log >= LOG_EVERY_SECONDS or now < self._last_log:
            self._last_log = now
            logger.warning(message, exc)


breaker = Breaker()


# --- sync twins for the admin (a client of their own: async_to_sync may run a new loop) ----------
def circuit_states(*, keys: Iterable[str]) -> list[CircuitState]:
    """The circuit states of `keys`; raises BreakerUnavailable when Redis is away."""
    return async_to_sync(_with_client)(breaker.states, list(keys))


def circuit_reset(*, keys: Iterable[str]) -> None:
    """Close the circuits of `keys` in every process."""
    async_to_sync(_with_client)(breaker.reset, list(keys))


async def _with_client(method: Callable[..., Any], keys: list[str]) -> Any:
    client = redis_client.new_client(breaker.redis_url)
    try:
        return await method(keys, client=client)
    finally:
        await client.aclose()
