"""Which Redis client for the proxy path's commands: CPU per call of each, on a real Redis.

    .venv/bin/python bench/redis_clients.py [--url redis://127.0.0.1:6379/5] [--calls 20000]

In this one process on uvloop, runs the same small Lua script (EVALSHA, two keys, three
arguments: the shape of the admission and settlement calls) with 1 and with 16 calls in
flight, through:

- redis-py's asyncio client (a connection pool, hiredis parsing), as the gateway used;
- the gateway's pipelined connection (gateway_project/lib/redis_pipe.py);

and prints the CPU time this process spent per call (Redis's own CPU is not counted) and
the rate reached. ARCHITECTURE.md quotes the figures. Uses keys under `bench:redis:` only.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCRIPT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], 'calls', 1)
return {n, ARGV[3]}
"""
KEYS = ("bench:redis:counter", "bench:redis:hash")


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(
    name: str, call: Callable[[], Awaitable[object]], calls: int, concurrency: int
) -> dict:
    async def worker(count: int) -> None:
        for _ in range(count):
            await call()

    await worker(200)  # connected, script loaded, caches warm
    per_worker = calls // concurrency
    cpu0, wall0 = cpu_seconds(), time.perf_counter()
    await asyncio.gather(*(worker(per_worker) for _ in range(concurrency)))
    cpu1, wall1 = cpu_seconds(), time.perf_counter()
    done = per_worker * concurrency
    result = {
        "client": name,
        "in_flight": concurrency,
        "cpu_us_per_call": round(1e6 * (cpu1 - cpu0) / done, 1),
        "wall_us_per_call": round(1e6 * (wall1 - wall0) / done, 1),
        "calls_per_s": round(done / (wall1 - wall0)),
    }
    print(
        f"{name:28s} {concurrency:3d} in flight  {result['cpu_us_per_call']:7.1f} us CPU/call "
        f"{result['calls_per_s']:8,d} calls/s",
        flush=True,
    )
    return result


async def main(url: str, calls: int) -> None:
    import redis.asyncio

    from gateway_project.lib.redis_pipe import PipelinedRedis

    pooled = redis.asyncio.Redis.from_url(url, socket_timeout=0.5, socket_connect_timeout=0.5)
    sha = await pooled.script_load(SCRIPT)
    pipelined = PipelinedRedis(url, timeout=0.5, loop=asyncio.get_running_loop())

    async def with_redis_py() -> object:
        return await pooled.evalsha(sha, 2, *KEYS, 1, 60000, "request-id")

    async def with_pipe() -> object:
        return await pipelined.execute("EVALSHA", sha, 2, *KEYS, 1, 60000, "request-id")

    for concurrency in (1, 16):
        for _ in range(2):  # alternate, so a busy moment does not favour one
            await measure("redis-py asyncio (pooled)", with_redis_py, calls, concurrency)
            await measure("pipelined connection", with_pipe, calls, concurrency)
    await pooled.delete(*KEYS)
    await pooled.aclose()
    await pipelined.aclose()


if __name__ == "__main__":
    import uvloop

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--calls", type=int, default=20000)
    options = parser.parse_args()
    uvloop.run(main(options.url, options.calls))
