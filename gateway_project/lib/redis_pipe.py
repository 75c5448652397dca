"""One pipelined Redis connection per event loop, for the proxy's per-request commands.

A governed request sends two Lua calls (admission and settlement). Through redis-py's
asyncio client each call checks a connection out of the pool under a lock, runs its
health, retry and observability wrappers and an `asyncio.timeout`, and checks the
connection back in: 98-198 us of CPU per call, against 17-67 us here
(bench/redis_clients.py compares the two on their own).

Here every command is encoded and written at once, and its reply is awaited in order:
Redis answers the commands of one connection in the order they were sent, so concurrent
requests share the connection without a pool or a lock, and commands sent together
travel together. hiredis (redis-py's own reply parser) reads the replies.

Failures come out as redis-py's exceptions, so callers keep one vocabulary
(`redis_client.is_unavailable()`):
- no connection, or the connection dropped: `ConnectionError` (every command still
  waiting on it fails at once; the next command connects again, so a restarted Redis
  needs no restart of ours);
- no reply within the timeout: `TimeoutError`, and the connection is dropped (a server
  that stopped answering gets a fresh connection, not a longer queue);
- an error reply: `ResponseError` (`NoScriptError` for NOSCRIPT), the connection kept.

Used for the hot path only (Lua scripts and the config generation read); everything else
(admin, management commands, cache maintenance, tests) uses redis-py.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
import weakref
from typing import Any

import hiredis
import redis.exceptions
from redis.asyncio.connection import parse_url

from gateway_project.lib.loops import close_with_loop

_pipes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, PipelinedRedis]] = (
    weakref.WeakKeyDictionary()
)


def pipe(url: str, *, timeout: float) -> PipelinedRedis:
    """This event loop's pipelined connection to `url`."""
    loop = asyncio.get_running_loop()
    per_loop = _pipes.get(loop)
    if per_loop is None:
        per_loop = _pipes[loop] = {}
    connection = per_loop.get(url)
    if connection is None:
        connection = per_loop[url] = PipelinedRedis(url, timeout=timeout, loop=loop)
        close_with_loop(connection.aclose)
    return connection


def encode_command(args: tuple[Any, ...]) -> bytes:
    """A command as a RESP array of bulk strings (what redis-py sends too)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        kind = type(arg)  # exact types first: this runs for every argument of every call
        if kind is str:
            data = arg.encode()
        elif kind is int:
            data = b"%d" % arg
        elif kind is bytes:
            data = arg
        elif kind is float:
            data = repr(arg).encode()
        elif isinstance(arg, bool) or not isinstance(arg, int | str | bytes):
            # As redis-py: None and booleans have no single Redis spelling.
            raise redis.exceptions.DataError(f"cannot send {kind.__name__} to Redis")
        elif isinstance(arg, int):  # an IntEnum, say
            data = b"%d" % int(arg)
        else:
            data = arg.encode() if isinstance(arg, str) else bytes(arg)
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _reply_error(message: str) -> redis.exceptions.RedisError:
    if message.startswith("NOSCRIPT"):
        return redis.exceptions.NoScriptError(message)
    if message.startswith(("NOAUTH", "WRONGPASS", "NOPERM")):
        return redis.exceptions.AuthenticationError(message)
    return redis.exceptions.ResponseError(message)


class _RespProtocol(asyncio.Protocol):
    """Replies matched to waiters in the order the commands were written."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.waiters: collections.deque[asyncio.Future] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.usable = False
        self.outgoing: list[bytes] = []  # commands of this loop turn, written together

    def send(self, data: bytes, loop: asyncio.AbstractEventLoop) -> None:
        """Queue a command; everything queued in one turn of the loop goes out in one
        write (one system call for the commands of many concurrent requests)."""
        if not self.outgoing:
            loop.call_soon(self.flush)
        self.outgoing.append(data)

    def flush(self) -> None:
        outgoing, self.outgoing = self.outgoing, []
        if self.usable and outgoing:
            self.transport.write(b"".join(outgoing))  # type: ignore[union-attr]  # usable: connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # a stream's: a Transport
        self.usable = True

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        waiters = self.waiters
        while True:
            try:
                reply = self.reader.gets()
            except hiredis.ProtocolError:
                self.drop()
                return
            if reply is False:
                return
            if not waiters:
                self.drop()  # a reply nobody asked for: the stream cannot be trusted
                return
            waiter = waiters.popleft()
            if not waiter.done():  # a caller that gave up (cancelled, timed out) is skipped
                waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.usable = False
        error = redis.exceptions.ConnectionError(
            f"Redis connection lost: {exc}" if exc else "Redis closed the connection"
        )
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(error)

    def drop(self) -> None:
        """Stop using this connection now; its waiters fail when the close completes."""
        self.usable = False
        if self.transport is not None:
            self.transport.close()


class PipelinedRedis:
    def __init__(self, url: str, *, timeout: float, loop: asyncio.AbstractEventLoop) -> None:
        self._options = parse_url(url)
        self._tls = url.startswith("rediss://")
        self._timeout = timeout
        self._loop = loop
        self._protocol: _RespProtocol | None = None
        self._connecting: asyncio.Future[_RespProtocol] | None = None

    async def execute(self, *args: Any) -> Any:
        """Send one command and return its reply (bytes, int, list, None)."""
        protocol = self._protocol
        if protocol is None or not protocol.usable:
            protocol = await self._connect()
        data = encode_command(args)
        return await self._send(protocol, data)

    async def _send(self, protocol: _RespProtocol, data: bytes) -> Any:
        waiter = self._loop.create_future()
        protocol.waiters.append(waiter)
        protocol.send(data, self._loop)
        timer = self._loop.call_later(self._timeout, self._expire, protocol, waiter)
        try:
            reply = await waiter
        finally:
            timer.cancel()
        if isinstance(reply, hiredis.ReplyError):
            raise _reply_error(str(reply))
        return reply

    def _expire(self, protocol: _RespProtocol, waiter: asyncio.Future) -> None:
        if waiter.done():
            return
        waiter.set_exception(
            redis.exceptions.TimeoutError(f"no reply from Redis within {self._timeout:g} s")
        )
        protocol.drop()

    async def _connect(self) -> _RespProtocol:
        """Open the connection once, however many commands are waiting for it."""
        connecting = self._connecting
        if connecting is None:
            connecting = self._connecting = asyncio.ensure_future(self._open())
            connecting.add_done_callback(self._opened)
        # Shielded: one caller giving up must not abandon the connection the others await.
        return await asyncio.shield(connecting)

    def _opened(self, connecting: asyncio.Future[_RespProtocol]) -> None:
        self._connecting = None
        if not connecting.cancelled() and connecting.exception() is None:
            self._protocol = connecting.result()

    async def _open(self) -> _RespProtocol:
        options = self._options
        protocol: _RespProtocol | None = None
        try:
            async with asyncio.timeout(self._timeout):
                if "path" in options:
                    _, protocol = await self._loop.create_unix_connection(
                        _RespProtocol, options["path"]
                    )
                else:
                    _, protocol = await self._loop.create_connection(
                        _RespProtocol,
                        options.get("host", "localhost"),
                        options.get("port", 6379),
                        ssl=self._ssl_context() if self._tls else None,
                    )
                for command in self._handshake():
                    await self._send(protocol, encode_command(command))
        except BaseException as exc:
            if protocol is not None:
                protocol.drop()
            if isinstance(exc, OSError | TimeoutError):
                raise redis.exceptions.ConnectionError(f"cannot connect to Redis: {exc}") from exc
            raise
        return protocol

    def _handshake(self) -> list[tuple[Any, ...]]:
        """What a new connection sends first: AUTH and SELECT, as the URL asks."""
        options = self._options
        commands: list[tuple[Any, ...]] = []
        if options.get("password"):
            user = options.get("username")
            auth = (user, options["password"]) if user else (options["password"],)
            commands.append(("AUTH", *auth))
        if options.get("db"):
            commands.append(("SELECT", options["db"]))
        return commands

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if str(self._options.get("ssl_cert_reqs", "")).lower() in ("none", "cert_none"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    async def aclose(self) -> None:
        protocol, self._protocol = self._protocol, None
        if protocol is not None:
            protocol.drop()
