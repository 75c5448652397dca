"""The circuit breakers' shared state in Redis: one `circuit.lua` call per operation.

Each call answers, for every key it was given, 8 integers: the state code (CLOSED_CODE,
OPEN_CODE, PROBING_CODE), consecutive failures, failures and attempts in the window, when
the circuit opened, when its next probe is due, when the probe's lease ends (all in ms),
and whether this call was granted the probe. providers/circuit.py keeps a process-local
copy of these (`CachedState`) and decides from it; this module only builds the calls and
reads the numbers back.

Settings (read with getattr, so they need not exist):
GATEWAY_CIRCUIT_CACHE_SECONDS (0.5), GATEWAY_CIRCUIT_WINDOW_SECONDS (60),
GATEWAY_CIRCUIT_MIN_ATTEMPTS (20), GATEWAY_CIRCUIT_FAILURE_RATE (0.5),
GATEWAY_CIRCUIT_PROBE_LEASE_SECONDS (default: the target's connect + total timeouts + 5 s).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from gateway_project.lib import redis_client
from providers.base import Target

KEY_PREFIX = "gw:cb:"
CACHE_SECONDS = 0.5
WINDOW_SECONDS = 60.0
WINDOW_BUCKETS = 12  # the window slides in steps of WINDOW_SECONDS / WINDOW_BUCKETS
MIN_ATTEMPTS = 20
FAILURE_RATE = 0.5
PROBE_LEASE_MARGIN_SECONDS = 5.0
CLOSED_CODE, OPEN_CODE, PROBING_CODE = 0, 1, 2  # the codes circuit.lua returns
CLEAN = (CLOSED_CODE, 0, 0, 0, 0, 0, 0)  # a closed circuit with nothing against it

_script = redis_client.register_script(
    "circuit", Path(__file__).resolve().parent / "lua" / "circuit.lua"
)


@dataclass(slots=True)
class CachedState:
    """One circuit as circuit.lua last reported it, and when this process fetched it and
    last asked about it (time.time() seconds)."""

    code: int
    failures: int
    window_failures: int
    window_attempts: int
    opened_ms: int
    probe_ms: int
    lease_ms: int
    fetched: float
    used: float

    @property
    def clean(self) -> bool:
        return self.code == CLOSED_CODE and self.failures == 0 and self.window_failures == 0


def _setting(name: str, default: float) -> float:
    return float(getattr(settings, name, default))


def _as_ints(raw: Sequence[Any]) -> list[int]:
    return [int(value) for value in raw]


@dataclass(frozen=True, slots=True)
class Tuning:
    """A breaker's thresholds: the values given (tests), else the settings (read with
    getattr at each use, so they need not exist and a test's override applies at once)."""

    cache: float | None = None
    window: float | None = None
    min_attempts: int | None = None
    failure_rate: float | None = None

    def cache_seconds(self) -> float:
        if self.cache is not None:
            return self.cache
        return _setting("GATEWAY_CIRCUIT_CACHE_SECONDS", CACHE_SECONDS)

    def window_args(self, now: float) -> list[int]:
        window = self.window
        if window is None:
            window = _setting("GATEWAY_CIRCUIT_WINDOW_SECONDS", WINDOW_SECONDS)
        window_ms = max(int(window * 1000), WINDOW_BUCKETS)
        return [int(now * 1000), window_ms, window_ms // WINDOW_BUCKETS]

    def rate_args(self) -> list[int]:
        attempts = self.min_attempts
        if attempts is None:
            attempts = int(_setting("GATEWAY_CIRCUIT_MIN_ATTEMPTS", MIN_ATTEMPTS))
        rate = self.failure_rate
        if rate is None:
            rate = _setting("GATEWAY_CIRCUIT_FAILURE_RATE", FAILURE_RATE)
        return [max(int(attempts), 1), round(rate * 1000)]

    @staticmethod
    def lease_ms(target: Target) -> int:
        lease = getattr(settings, "GATEWAY_CIRCUIT_PROBE_LEASE_SECONDS", None)
        if lease is None:
            lease = target.connect_timeout_s + target.timeout_s + PROBE_LEASE_MARGIN_SECONDS
        return max(int(float(lease) * 1000), 1)


async def read(client: Any, tuning: Tuning, keys: list[str], now: float) -> list[int]:
    """The states of `keys` (8 integers each)."""
    raw = await _script(
        keys=[KEY_PREFIX + key for key in keys],
        args=["read", *tuning.window_args(now)],
        client=client,
    )
    return _as_ints(raw)


async def probe(
    client: Any, tuning: Tuning, targets: list[Target], now: float, *, token: str
) -> list[int]:
    """Ask for the probe of each of `targets` (their cool-down is over), held by `token`."""
    raw = await _script(
        keys=[KEY_PREFIX + target.key for target in targets],
        args=[
            "probe",
            *tuning.window_args(now),
            token,
            *(tuning.lease_ms(target) for target in targets),
        ],
        client=client,
    )
    return _as_ints(raw)


async def record(
    client: Any, tuning: Tuning, target: Target, now: float, *, outcome: str, token: str | None
) -> list[int]:
    """Count one attempt's `outcome` ("ok", "fail" or "release"); `token` if it was the
    probe. The target's new state (8 integers)."""
    args = [
        "record",
        *tuning.window_args(now),
        outcome,
        token or "",
        max(target.circuit_failure_threshold, 1),
        int(target.circuit_cooldown_s * 1000),
        *tuning.rate_args(),
    ]
    raw = await _script(keys=[KEY_PREFIX + target.key], args=args, client=client)
    return _as_ints(raw)


async def reset(client: Any, tuning: Tuning, keys: list[str], now: float) -> None:
    """Close the circuits of `keys` and forget their failures."""
    await _script(
        keys=[KEY_PREFIX + key for key in keys],
        args=["reset", *tuning.window_args(now)],
        client=client,
    )
