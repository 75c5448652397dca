"""Which HTTP client for upstream calls: CPU per request of each, against the fake upstream.

    .venv/bin/python bench/http_clients.py [--requests 6000] [--concurrency 16]

Starts bench/upstream.py, then, in this one process on uvloop, sends the same non-streamed
POST through each client with `--concurrency` requests in flight, and prints the CPU time
this process spent per request (the upstream's CPU is not counted) and the rate reached:

- httpx with its default transport (httpcore over anyio);
- the gateway's upstream client (providers/aiohttp_transport.py: httpx's API over aiohttp, with
  the lean `send`);
- a bare aiohttp session, the floor for what an asyncio client can cost.

The figures are what ARCHITECTURE.md ("Servers, and what the hot path is built on")
quotes for choosing the client.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from client import BODY  # noqa: E402
from cpu_cost import measure  # noqa: E402
from run import free_port  # noqa: E402


async def main(url: str, requests: int, concurrency: int) -> None:
    import aiohttp
    import httpx
    import orjson

    from providers.aiohttp_transport import new_upstream_client

    body = orjson.dumps(dict(BODY, model="bench-model"))
    headers = {"content-type": "application/json", "authorization": "Bearer bench"}
    load = {"calls": requests, "concurrency": concurrency, "warmup": 50, "unit": "request"}

    async with httpx.AsyncClient(
        trust_env=False,
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200),
    ) as plain:

        async def via_httpx() -> None:
            response = await plain.post(url, content=body, headers=headers)
            response.raise_for_status()

        await measure("httpx (default transport)", via_httpx, **load)

    async with new_upstream_client(trust_env=False) as ours:

        async def via_ours() -> None:
            response = await ours.send(httpx.Request("POST", url, content=body, headers=headers))
            response.raise_for_status()

        await measure("gateway client (httpx API over aiohttp)", via_ours, **load)

    async with aiohttp.ClientSession() as session:

        async def via_aiohttp() -> None:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                response.raise_for_status()

        await measure("aiohttp (bare session)", via_aiohttp, **load)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    port = free_port()
    upstream = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "upstream.py"), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        import uvloop

        uvloop.run(
            main(f"http://127.0.0.1:{port}/v1/chat/completions", args.requests, args.concurrency)
        )
    finally:
        upstream.terminate()
        upstream.wait(10)
