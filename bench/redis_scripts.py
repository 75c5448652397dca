"""What the governance scripts cost Redis: its CPU per admission and per settlement.

    .venv/bin/python bench/redis_scripts.py [--url redis://127.0.0.1:6379/5] [--requests 6000]

Redis runs Lua on its one thread, so the CPU a script takes there is what caps every
gateway replica together. This runs `billing/lua/admit.lua` for one rate limit (RPM and
TPM) and one hard budget, as the bench's tenant has, with the clock moved forward a fixed
step per request (1 ms, 20 ms and 1 s: a thousand requests a second on that limit, fifty,
one), then settles each request, and prints Redis's own CPU per call of each script (from
`INFO commandstats`, EVALSHA, before and after: other clients' calls on the same server
add to it). The first half of the admissions (at least 75 s of the script's clock) fills
the 60-second window and is not counted.
Uses keys under `bench:scripts:` only, and deletes them.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable
from pathlib import Path

import redis

LUA = Path(__file__).resolve().parent.parent / "billing" / "lua"
PREFIX = "bench:scripts:"
LIMIT, BUDGET, RESERVATIONS = PREFIX + "limit", PREFIX + "budget", PREFIX + "reservations"


def evalsha_usage(client: redis.Redis) -> tuple[int, int]:
    stats = client.info("commandstats").get("cmdstat_evalsha", {})
    return int(stats.get("calls", 0)), int(stats.get("usec", 0))


def redis_us_per_call(client: redis.Redis, calls: Iterable[tuple]) -> float:
    """Run `calls` (EVALSHA arguments), pipelined 50 at a time; Redis's CPU per call."""
    calls_before, usec_before = evalsha_usage(client)
    pipe = client.pipeline(transaction=False)
    for count, args in enumerate(calls, 1):
        pipe.evalsha(*args)
        if count % 50 == 0:
            pipe.execute()
    pipe.execute()
    calls_after, usec_after = evalsha_usage(client)
    return (usec_after - usec_before) / max(calls_after - calls_before, 1)


def run(client: redis.Redis, step_ms: int, requests: int) -> tuple[float, float]:
    for key in client.scan_iter(PREFIX + "*"):
        client.delete(key)
    admit = client.script_load((LUA / "admit.lua").read_text())
    settle = client.script_load((LUA / "settle.lua").read_text())
    client.hset(BUDGET, mapping={"st": 0, "sc": 0, "rt": 0, "rc": 0})
    start_ms = int(time.time() * 1000)

    def admission(i: int) -> tuple:
        now_ms = start_ms + i * step_ms
        return (
            admit, 4, f"{PREFIX}resv:{i}", RESERVATIONS, LIMIT, BUDGET,
            now_ms, f"r{i}", now_ms + 10**12, 1, 1, 30,  # never expires here
            -1, 0, 0, 0,  # the output cap is the client's (never lowered)
            10**8, 10**11,  # rpm, tpm: never refuse
            -1, 10**20, 1, 1000, 100_000,  # budget: no token cap, a cost cap, hard, need
        )  # fmt: skip

    def settlement(i: int) -> tuple:
        second = (start_ms + i * step_ms) // 1000
        return (
            settle, 4, f"{PREFIX}resv:{i}", RESERVATIONS, BUDGET, LIMIT,
            f"r{i}", 1, 1, 25, 25_000, second, -5, 0, 0,
        )  # fmt: skip

    half = requests // 2
    redis_us_per_call(client, map(admission, range(half)))  # fills the window
    admit_us = redis_us_per_call(client, map(admission, range(half, requests)))
    settle_us = redis_us_per_call(client, map(settlement, range(half, requests)))
    for key in client.scan_iter(PREFIX + "*"):
        client.delete(key)
    return admit_us, settle_us


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="redis://127.0.0.1:6379/5")
    parser.add_argument("--requests", type=int, default=6000)
    options = parser.parse_args()
    client = redis.Redis.from_url(options.url)
    print(f"{'requests on one limit':<24}{'admit (us of Redis CPU)':>26}{'settle':>10}")
    for step_ms, label in ((1, "1,000/s"), (20, "50/s"), (1000, "1/s")):
        # At least 150 s of the script's clock, so the measured half sees a full window.
        admit_us, settle_us = run(client, step_ms, max(options.requests, 150_000 // step_ms))
        print(f"{label:<24}{admit_us:>26.1f}{settle_us:>10.1f}")


if __name__ == "__main__":
    main()
