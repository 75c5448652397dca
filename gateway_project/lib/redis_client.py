"""The asyncio Redis client and the Lua scripts the hot path runs on it.

`async_client()` hands out one client per event loop (a redis.asyncio client cannot
cross loops), with the socket timeouts of GATEWAY_REDIS_TIMEOUT_SECONDS so a dead Redis
costs a request at most that long. Without REDIS_URL (the embedded single-process setup)
it is an in-process fakeredis with Lua; every client of the process shares one
FakeServer, so separate clients (and separate event loops) see the same data, as they
would on a real Redis.

`execute()` sends one command of the proxy path (a Lua script, the config generation read)
over the event loop's pipelined connection (`redis_pipe`), which costs a fraction of
redis-py's pooled client per command; everything else uses `async_client()`.

`register_script()` loads a `.lua` file once per process; calling the result runs it
with EVALSHA, falling back to EVAL the first time a server has not seen it.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from django.conf import settings

from gateway_project.lib.redis_pipe import pipe

_lock = threading.Lock()
# Keyed by the loop object itself (weakly): a loop's id can be reused once it is gone, and
# short-lived loops (async_to_sync in a sync view or test) must not keep their clients.
_clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = (
    weakref.WeakKeyDictionary()
)
_fake_server: Any = None
_scripts: dict[str, LuaScript] = {}


def _url(url: str | None) -> str:
    return settings.REDIS_URL if url is None else url


def new_client(url: str | None = None) -> Any:
    """A client of its own (the caller closes it with `aclose()`); `url=""` is fakeredis."""
    url = _url(url)
    if url:
        import redis.asyncio

        timeout = settings.GATEWAY_REDIS_TIMEOUT_SECONDS
        return redis.asyncio.Redis.from_url(
            url, socket_timeout=timeout, socket_connect_timeout=timeout
        )
    import fakeredis

    global _fake_server
    with _lock:
        if _fake_server is None:
            _fake_server = fakeredis.FakeServer()
        server = _fake_server
    return fakeredis.FakeAsyncRedis(server=server)


def async_client(url: str | None = None) -> Any:
    """This event loop's client for `url` (default: settings.REDIS_URL, empty: fakeredis)."""
    url = _url(url)
    loop = asyncio.get_running_loop()
    with _lock:
        per_loop = _clients.get(loop)
        if per_loop is None:
            per_loop = _clients[loop] = {}
        client = per_loop.get(url)
    if client is None:
        client = new_client(url)
        with _lock:
            client = per_loop.setdefault(url, client)
    return client


async def execute(*args: Any) -> Any:
    """One command on the proxy path's connection: the event loop's pipelined connection
    (`redis_pipe`) with REDIS_URL, the in-process fakeredis without."""
    url = settings.REDIS_URL
    if url:
        return await pipe(url, timeout=settings.GATEWAY_REDIS_TIMEOUT_SECONDS).execute(*args)
    return await async_client(url).execute_command(*args)


class LuaScript:
    """A Lua script from a file, run by hash (EVALSHA) with EVAL as the fallback."""

    def __init__(self, name: str, source: str) -> None:
        self.name = name
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    async def __call__(
        self, *, keys: Sequence[Any] = (), args: Sequence[Any] = (), client: Any = None
    ) -> Any:
        """Run the script on `client`, or by default on the proxy path's connection."""
        import redis.exceptions

        run = client.execute_command if client is not None else execute
        try:
            return await run("EVALSHA", self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await run("EVAL", self.source, len(keys), *keys, *args)


def register_script(name: str, path: Path | str) -> LuaScript:
    """The script `name`, read from `path` the first time (later calls return the same one)."""
    with _lock:
        script = _scripts.get(name)
        if script is None:
            script = _scripts[name] = LuaScript(name, Path(path).read_text())
    return script


def is_unavailable(exc: BaseException) -> bool:
    """Whether `exc` means "Redis could not be reached" (rather than a bug or a bad reply)."""
    import redis.exceptions

    return isinstance(
        exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)
    )
