"""CPU per call of an async client, in this process: the shared core of the client
comparisons (http_clients.py, redis_clients.py)."""

from __future__ import annotations

import asyncio
import resource
import time
from collections.abc import Awaitable, Callable


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def cpu_per_call(
    call: Callable[[], Awaitable[object]], *, calls: int, concurrency: int, warmup: int
) -> tuple[float, float]:
    """(CPU seconds per call, calls per second) with `concurrency` calls in flight, after
    `warmup` calls one at a time (connections open, caches warm)."""

    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    await worker(warmup)
    per_worker = calls // concurrency
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
    cpu1, wall1 = cpu_seconds(), time.perf_counter()
    done = per_worker * concurrency
    return (cpu1 - cpu0) / done, done / (wall1 - wall0)


async def measure(
    label: str,
    call: Callable[[], Awaitable[object]],
    *,
    calls: int,
    concurrency: int,
    warmup: int,
    unit: str = "call",
) -> dict:
    """Print and return one line of a comparison: CPU per `unit` and the rate reached."""
    cpu, rate = await cpu_per_call(call, calls=calls, concurrency=concurrency, warmup=warmup)
    result = {
        "label": label,
        "in_flight": concurrency,
        f"cpu_us_per_{unit}": round(1e6 * cpu, 1),
        f"{unit}s_per_s": round(rate),
    }
    print(
        f"{label:40s} {concurrency:3d} in flight {1e6 * cpu:8.1f} us CPU/{unit} "
        f"{round(rate):8,d} {unit}s/s",
        flush=True,
    )
    return result
