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
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from cpu_cost import measure  # noqa: E402

SCRIPT = """
local n = redis.call('INCRBY', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
redis.call('HINCRBY', KEYS[2], 'calls', 1)
return {n, ARGV[3]}
"""
KEYS = ("bench:redis:counter", "bench:redis:hash")


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
            load = {"calls": calls, "concurrency": concurrency, "warmup": 200}
            await measure("redis-py asyncio (pooled)", with_redis_py, **load)
            await measure("pipelined connection", with_pipe, **load)
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
