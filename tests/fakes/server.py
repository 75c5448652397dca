"""A tiny real HTTP server for tests: a raw ASGI app under uvicorn in a background thread.

It runs its own event loop in its own thread, so it serves sync tests, async tests (each
with its own loop) and other processes (a gateway under test started as a subprocess)
alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, NamedTuple, Self

import orjson
import uvicorn

Receive = Callable[[], Awaitable[dict]]
Send = Callable[[dict], Awaitable[None]]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def refused_base_url() -> str:
    """A base URL whose connections are refused at once (nobody listens there)."""
    return f"http://127.0.0.1:{free_port()}"


class Received(NamedTuple):
    """One recorded request: unpacks as `(path, headers, body)` or reads by name."""

    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Exchange:
    """One received request, and the means to answer it."""

    path: str
    headers: dict[str, str]
    body: Any
    receive: Receive
    send: Send

    async def json(
        self, status: int, payload: object, headers: Iterable[tuple[str, str]] = ()
    ) -> None:
        content = orjson.dumps(payload)
        await self.start(
            status,
            [("content-type", "application/json"), ("content-length", str(len(content))), *headers],
        )
        await self.send({"type": "http.response.body", "body": content})

    async def start(self, status: int, headers: Iterable[tuple[str, str]]) -> None:
        await self.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers],
            }
        )

    async def start_sse(self) -> None:
        await self.start(
            200, [("content-type", "text/event-stream"), ("cache-control", "no-cache")]
        )

    async def sse(self, data: object, event: str | None = None) -> None:
        raw = data if isinstance(data, bytes) else orjson.dumps(data)
        prefix = f"event: {event}\n".encode() if event else b""
        await self.send(
            {
                "type": "http.response.body",
                "body": prefix + b"data: " + raw + b"\n\n",
                "more_body": True,
            }
        )

    async def raw(self, data: bytes) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": True})

    async def end(self) -> None:
        await self.send({"type": "http.response.body", "body": b""})

    async def wait_for_disconnect(self, seconds: float) -> bool:
        """Sleep up to `seconds`, waking early (True) when the client hangs up."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while (await self.receive())["type"] != "http.disconnect":
                    pass
                return True
        return False


class FakeServer:
    """Records every request in `.requests` as a `Received(path, headers, body)` and calls
    `handle`.

    `path` includes the query string when there is one (`/openai/...?api-version=...`);
    header names are lower case; `body` is the decoded JSON (None when there was none).
    """

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.base_url = ""
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    async def handle(self, exchange: Exchange) -> None:
        raise NotImplementedError

    @property
    def last(self) -> Received:
        return self.requests[-1]

    def clear(self) -> None:
        self.requests.clear()

    async def __call__(self, scope: dict, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        raw = b"".join(chunks)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        path = scope["path"]
        if scope.get("query_string"):
            path += "?" + scope["query_string"].decode("latin-1")
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        self.requests.append(Received(path, headers, body))
        await self.handle(Exchange(path, headers, body, receive, send))

    def start(self) -> Self:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(
            self,
            lifespan="off",
            loop="asyncio",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run,
            kwargs={"sockets": [sock]},
            name=type(self).__name__,
            daemon=True,
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.01)
        self.base_url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        if self._server is None or self._thread is None:
            return
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
