"""The benchmark's own Python load client, for what wrk cannot do: a fixed request rate
(wrk2 is not packaged by Debian) and per-chunk timing of streamed answers.

It is a raw asyncio protocol over keep-alive HTTP/1.1 connections with httptools' response
parser, on uvloop: no HTTP library on the timing path. Times are `time.perf_counter()`
taken when the request is written and when the bytes that complete an SSE event arrive;
JSON is parsed only after a stream has ended. Its cost is the same on the direct and the
gateway side, and `run.py` reports its direct numbers, which bound what it adds.

    python bench/client.py rate   URL --key K --rate 200 --duration 10
    python bench/client.py stream URL --key K --duration 10
    python bench/client.py hold   URL --key K --streams 1000 --chunks 20 --spacing-ms 250
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import httptools
import orjson

BODY = {
    "model": "bench",
    "messages": [{"role": "user", "content": "Say hello in one short sentence."}],
}


def request_bytes(url: str, key: str, body: dict) -> tuple[str, int, bytes]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    payload = orjson.dumps(body)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"Content-Type: application/json\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode()
    return host, port, head + payload


class Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.done: asyncio.Future | None = None
        self.status = 0
        self.body: list[bytes] = []
        self.sse = False
        self.pending = b""
        self.events: list[tuple[float, bytes]] = []
        self.keep_alive = True

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(cls, host, port)
        return conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.done is not None and not self.done.done():
            self.done.set_exception(ConnectionError("connection lost"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self.done is not None and not self.done.done():
                self.done.set_exception(exc)

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        if not self.sse:
            self.body.append(body)
            return
        now = time.perf_counter()
        data = self.pending + body
        while True:
            end = data.find(b"\n\n")
            if end < 0:
                break
            self.events.append((now, data[:end]))
            data = data[end + 2 :]
        self.pending = data

    def on_message_complete(self) -> None:
        if self.done is not None and not self.done.done():
            self.done.set_result(self.status)

    async def request(self, raw: bytes, *, sse: bool = False) -> tuple[int, float]:
        """Send one request; return (status, perf_counter() at the write)."""
        if self.transport is None:
            raise ConnectionError("closed")
        self.done = asyncio.get_running_loop().create_future()
        self.status, self.body, self.sse, self.pending, self.events = 0, [], sse, b"", []
        sent = time.perf_counter()
        self.transport.write(raw)
        status = await self.done
        return status, sent

    def usable(self) -> bool:
        return self.transport is not None and self.keep_alive

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


@dataclass
class RateResult:
    rate: float
    duration: float
    sent: int = 0
    ok: int = 0
    errors: int = 0
    statuses: Counter = field(default_factory=Counter)
    latencies_ms: list[float] = field(default_factory=list)
    late_ms: list[float] = field(default_factory=list)  # send time past the schedule
    opened: int = 0

    def summary(self) -> dict:
        return {
            "rate": self.rate,
            "duration_s": self.duration,
            "sent": self.sent,
            "ok": self.ok,
            "errors": self.errors,
            "statuses": dict(self.statuses),
            "connections": self.opened,
            "p50_ms": percentile(self.latencies_ms, 50),
            "p90_ms": percentile(self.latencies_ms, 90),
            "p99_ms": percentile(self.latencies_ms, 99),
            "max_ms": max(self.latencies_ms) if self.latencies_ms else None,
            "late_p99_ms": percentile(self.late_ms, 99),
        }


async def fixed_rate(
    url: str, key: str, *, rate: float, duration: float, body: dict | None = None, pool: int = 8
) -> dict:
    """Open loop: request i is sent at start + i/rate whether or not earlier ones answered
    (a new connection is opened when every open one is busy), so a slow server cannot slow
    the client down. Latency is from the write of the request to its last byte."""
    host, port, raw = request_bytes(url, key, body or BODY)
    result = RateResult(rate=rate, duration=duration)
    idle: list[Connection] = []
    for _ in range(pool):
        idle.append(await Connection.open(host, port))
        result.opened += 1
    # Warm every pooled connection once (not measured).
    for conn in list(idle):
        await conn.request(raw)

    async def one(scheduled: float) -> None:
        conn = None
        while idle:
            candidate = idle.pop()
            if candidate.usable():
                conn = candidate
                break
        try:
            if conn is None:
                conn = await Connection.open(host, port)
                result.opened += 1
            status, sent = await conn.request(raw)
            elapsed = time.perf_counter() - sent
            result.late_ms.append(max(0.0, sent - scheduled) * 1000)
            result.statuses[status] += 1
            if 200 <= status < 300:
                result.ok += 1
                result.latencies_ms.append(elapsed * 1000)
            else:
                result.errors += 1
            idle.append(conn)
        except Exception:
            result.errors += 1
            if conn is not None:
                conn.close()

    tasks: list[asyncio.Task] = []
    total = int(rate * duration)
    start = time.perf_counter() + 0.01
    for index in range(total):
        scheduled = start + index / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.ensure_future(one(scheduled)))
        result.sent += 1
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    for conn in idle:
        conn.close()
    # Below the offered rate when the server could not keep up (requests queued up).
    return {**result.summary(), "achieved_rps": result.ok / elapsed if elapsed > 0 else None}


def _content_of(event: bytes) -> str | None:
    """The content of a chat chunk event (None for other events)."""
    if not event.startswith(b"data: ") or event == b"data: [DONE]":
        return None
    try:
        chunk = orjson.loads(event[6:])
    except orjson.JSONDecodeError:
        return None
    for choice in chunk.get("choices") or ():
        content = (choice.get("delta") or {}).get("content")
        if content:
            return content
    return None


async def streams(
    url: str, key: str, *, duration: float, body: dict | None = None, warmup: int = 3
) -> dict:
    """Streams one after another on one keep-alive connection for `duration` seconds.

    Per stream: time to the first `data:` event, time to the first event carrying content
    (TTFT), the gap between the first two content events, and the gaps between the later
    consecutive ones (the steady state)."""
    payload = dict(body or BODY, stream=True, stream_options={"include_usage": True})
    host, port, raw = request_bytes(url, key, payload)
    conn = await Connection.open(host, port)
    first_event_ms: list[float] = []
    ttft_ms: list[float] = []
    gaps_ms: list[float] = []
    first_gaps_ms: list[float] = []
    chunk_counts: Counter = Counter()
    errors = 0
    count = 0
    deadline = time.perf_counter() + duration
    index = 0
    while True:
        if index >= warmup and time.perf_counter() >= deadline:
            break
        if not conn.usable():
            conn.close()
            conn = await Connection.open(host, port)
        try:
            status, sent = await conn.request(raw, sse=True)
        except Exception:
            errors += 1
            conn.close()
            conn = await Connection.open(host, port)
            index += 1
            continue
        events = conn.events
        index += 1
        if index <= warmup:
            continue
        count += 1
        if status != 200 or not events or events[-1][1] != b"data: [DONE]":
            errors += 1
            continue
        first_event_ms.append((events[0][0] - sent) * 1000)
        content_times = [at for at, event in events if _content_of(event) is not None]
        chunk_counts[len(content_times)] += 1
        if content_times:
            ttft_ms.append((content_times[0] - sent) * 1000)
            gaps = [(b - a) * 1000 for a, b in itertools.pairwise(content_times)]
            # The first gap absorbs whatever delayed the first token and not the second
            # (a proxy's per-request overhead): kept apart from the steady-state gaps.
            first_gaps_ms.extend(gaps[:1])
            gaps_ms.extend(gaps[1:])
    conn.close()
    return {
        "streams": count,
        "errors": errors,
        "content_chunks_per_stream": dict(chunk_counts),
        "first_event_p50_ms": percentile(first_event_ms, 50),
        "ttft_p50_ms": percentile(ttft_ms, 50),
        "ttft_p99_ms": percentile(ttft_ms, 99),
        "first_gap_p50_ms": percentile(first_gaps_ms, 50),
        "first_gap_p1_ms": percentile(first_gaps_ms, 1),
        "gap_p1_ms": percentile(gaps_ms, 1),
        "gap_p50_ms": percentile(gaps_ms, 50),
        "gap_p99_ms": percentile(gaps_ms, 99),
        "gaps": len(gaps_ms),
        "gaps_ms": gaps_ms,
    }


async def held_open(
    url: str, key: str, *, count: int, chunks: int, spacing_ms: float, open_within_s: float = 2.0
) -> dict:
    """`count` streams open at the same time, each on its own connection, each lasting
    about `chunks` x `spacing_ms` (the fake upstream reads both from the body). Connections
    are opened over `open_within_s` so the listen backlog is not what is measured."""
    payload = dict(
        BODY,
        stream=True,
        stream_options={"include_usage": True},
        bench_stream={"chunks": chunks, "spacing_ms": spacing_ms},
    )
    host, port, raw = request_bytes(url, key, payload)
    statuses: Counter = Counter()
    ttft_ms: list[float] = []
    gaps_ms: list[float] = []
    complete = 0
    failures: Counter = Counter()

    async def one(index: int) -> None:
        nonlocal complete
        await asyncio.sleep(open_within_s * index / count)
        try:
            conn = await Connection.open(host, port)
        except OSError as exc:
            failures[f"connect: {type(exc).__name__}"] += 1
            return
        try:
            status, sent = await conn.request(raw, sse=True)
        except Exception as exc:
            failures[f"stream: {type(exc).__name__}"] += 1
            return
        finally:
            conn.close()
        statuses[status] += 1
        events = conn.events
        content_times = [at for at, event in events if _content_of(event) is not None]
        if status == 200 and events and events[-1][1] == b"data: [DONE]":
            if len(content_times) == chunks:
                complete += 1
            else:
                failures["missing chunks"] += 1
        else:
            failures[f"status {status} or no [DONE]"] += 1
        if content_times:
            ttft_ms.append((content_times[0] - sent) * 1000)
            gaps_ms.extend((b - a) * 1000 for a, b in itertools.pairwise(content_times[1:]))

    started = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(count)))
    return {
        "streams": count,
        "complete": complete,
        "failures": dict(failures),
        "statuses": {str(k): v for k, v in statuses.items()},
        "elapsed_s": round(time.perf_counter() - started, 2),
        "chunks": chunks,
        "spacing_ms": spacing_ms,
        "ttft_p50_ms": percentile(ttft_ms, 50),
        "ttft_p99_ms": percentile(ttft_ms, 99),
        "gap_p50_ms": percentile(gaps_ms, 50),
        "gap_p99_ms": percentile(gaps_ms, 99),
        "gap_max_ms": max(gaps_ms) if gaps_ms else None,
    }


def run(coro):
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def main() -> None:
    parser = argparse.ArgumentParser(description="bench load client")
    parser.add_argument("mode", choices=["rate", "stream", "hold"])
    parser.add_argument("url")
    parser.add_argument("--key", default="none")
    parser.add_argument("--rate", type=float, default=200)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--spacing-ms", type=float, default=250)
    args = parser.parse_args()
    if args.mode == "hold":
        out = run(
            held_open(
                args.url,
                args.key,
                count=args.streams,
                chunks=args.chunks,
                spacing_ms=args.spacing_ms,
            )
        )
    elif args.mode == "rate":
        out = run(fixed_rate(args.url, args.key, rate=args.rate, duration=args.duration))
    else:
        out = run(streams(args.url, args.key, duration=args.duration))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
