"""A minimal, fast fake OpenAI upstream for the benchmark.

    python bench/upstream.py --port 9100 [--chunks 20] [--spacing-ms 5] [--ttft-ms 0]

One process, uvloop when installed, a raw asyncio protocol with httptools' parser: HTTP/1.1
keep-alive, no framework. `POST <anything>/chat/completions`:

- non-streaming (`"stream"` absent or false): one fixed small completion with `usage`, sent
  from inside `data_received` (no task, no await);
- streaming (`"stream": true`): after TTFT ms, a role chunk and the first content chunk
  together, then the other content chunks SPACING ms apart, a finish chunk, a usage chunk
  (when `stream_options.include_usage`, as the gateway always asks) and `data: [DONE]`,
  with chunked transfer encoding, one write (one TCP segment) per SSE event.

Chunk count, spacing and TTFT come from the command line (or BENCH_STREAM_CHUNKS,
BENCH_STREAM_SPACING_MS, BENCH_STREAM_TTFT_MS), and a request may override them with the
query string (`?chunks=50&spacing_ms=20&ttft_ms=0`) or, through a proxy that forwards
unknown body fields, with a `"bench_stream": {"chunks": 50, "spacing_ms": 20}` body field.

`GET /health` answers 200. `run.py` checks it is not the bottleneck: its direct throughput
is many times the gateway's, and its CPU use is sampled while the gateway is under load.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
from urllib.parse import parse_qs

import httptools
import orjson

PROMPT_TOKENS = 14
CREATED = 1_700_000_000
COMPLETION_TEXT = "Hello! This is the benchmark upstream answering."
MODEL = "bench-model"


def _completion_body() -> bytes:
    return orjson.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": CREATED,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": COMPLETION_TEXT},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": PROMPT_TOKENS,
                "completion_tokens": 10,
                "total_tokens": PROMPT_TOKENS + 10,
            },
        }
    )


_BODY = _completion_body()
_JSON_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
    b"x-request-id: bench\r\n\r\n"
)
_JSON_RESPONSE = _JSON_HEAD % len(_BODY) + _BODY
_SSE_HEAD = (
    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\n"
    b"transfer-encoding: chunked\r\n\r\n"
)
_HEALTH = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
_NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"


def _chunk(delta: dict, finish: str | None = None) -> dict:
    return {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def _event(payload: dict | bytes) -> bytes:
    data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    event = b"data: " + data + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(event), event)


class Config:
    def __init__(self, chunks: int, spacing_ms: float, ttft_ms: float) -> None:
        self.chunks = chunks
        self.spacing_ms = spacing_ms
        self.ttft_ms = ttft_ms


class UpstreamProtocol(asyncio.Protocol):
    config: Config

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.body: list[bytes] = []
        self.streaming: asyncio.Task | None = None
        self.pending: list[tuple[bytes, bytes]] = []  # requests that came in while streaming

    # --- asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.streaming is not None:
            self.streaming.cancel()
        self.transport = None

    # --- httptools callbacks ------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self.url = b""
        self.body = []

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        request = (self.url, b"".join(self.body))
        if self.streaming is not None:
            self.pending.append(request)  # pipelined behind a stream: answer in order
        else:
            self._answer(*request)

    # --- answers ------------------------------------------------------------------------------
    def _answer(self, url: bytes, body: bytes) -> None:
        transport = self.transport
        if transport is None:
            return
        path, _, query = url.partition(b"?")
        if path.endswith(b"/chat/completions"):
            try:
                payload = orjson.loads(body) if body else {}
            except orjson.JSONDecodeError:
                payload = {}
            if payload.get("stream"):
                self.streaming = asyncio.ensure_future(self._stream(payload, query))
                return
            transport.write(_JSON_RESPONSE)
        elif path == b"/health":
            transport.write(_HEALTH)
        else:
            transport.write(_NOT_FOUND)
        if not self.parser.should_keep_alive():
            self._close()

    async def _stream(self, payload: dict, query: bytes) -> None:
        cfg = self.config
        chunks, spacing, ttft = cfg.chunks, cfg.spacing_ms, cfg.ttft_ms
        if query:
            params = parse_qs(query.decode())
            chunks = int(params.get("chunks", [chunks])[0])
            spacing = float(params.get("spacing_ms", [spacing])[0])
            ttft = float(params.get("ttft_ms", [ttft])[0])
        override = payload.get("bench_stream")
        if isinstance(override, dict):
            chunks = int(override.get("chunks", chunks))
            spacing = float(override.get("spacing_ms", spacing))
            ttft = float(override.get("ttft_ms", ttft))
        include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        keep_alive = self.parser.should_keep_alive()
        try:
            if ttft > 0:
                await asyncio.sleep(ttft / 1000)
            write = self.transport.write if self.transport else None
            if write is None:
                return
            write(_SSE_HEAD + _event(_chunk({"role": "assistant", "content": ""})))
            for index in range(chunks):
                if index and spacing > 0:
                    # Relative, not deadline-based: two chunks never leave closer together
                    # than the spacing, so a client seeing a much shorter gap has seen
                    # chunks coalesced on the way.
                    await asyncio.sleep(spacing / 1000)
                if self.transport is None:
                    return
                self.transport.write(_event(_chunk({"content": f"tok{index} "})))
            tail = _event(_chunk({}, "stop"))
            if include_usage:
                usage = {
                    "prompt_tokens": PROMPT_TOKENS,
                    "completion_tokens": chunks,
                    "total_tokens": PROMPT_TOKENS + chunks,
                }
                tail += _event(
                    {
                        "id": "chatcmpl-bench",
                        "object": "chat.completion.chunk",
                        "created": CREATED,
                        "model": MODEL,
                        "choices": [],
                        "usage": usage,
                    }
                )
            if self.transport is None:
                return
            self.transport.write(tail + _event(b"[DONE]") + b"0\r\n\r\n")
        except asyncio.CancelledError:
            return
        finally:
            self.streaming = None
        if not keep_alive:
            self._close()
            return
        while self.pending and self.streaming is None:
            self._answer(*self.pending.pop(0))

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None


async def serve(host: str, port: int, config: Config, backlog: int = 2048) -> None:
    UpstreamProtocol.config = config
    loop = asyncio.get_running_loop()
    server = await loop.create_server(UpstreamProtocol, host, port, backlog=backlog)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"bench upstream on http://{host}:{port}", flush=True)
    async with server:
        await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument(
        "--chunks", type=int, default=int(os.environ.get("BENCH_STREAM_CHUNKS", "20"))
    )
    parser.add_argument(
        "--spacing-ms", type=float, default=float(os.environ.get("BENCH_STREAM_SPACING_MS", "5"))
    )
    parser.add_argument(
        "--ttft-ms", type=float, default=float(os.environ.get("BENCH_STREAM_TTFT_MS", "0"))
    )
    args = parser.parse_args()
    config = Config(args.chunks, args.spacing_ms, args.ttft_ms)
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.host, args.port, config))
    else:
        uvloop.run(serve(args.host, args.port, config))


if __name__ == "__main__":
    main()
