"""Resources that belong to one event loop and must be closed when that loop shuts down."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

# The loop tracks async generators weakly: the hooks are kept alive here.
_hooks: set[AsyncIterator[None]] = set()


def close_with_loop(close: Callable[[], Awaitable[None]]) -> None:
    """Await `close()` when the running event loop shuts down, whoever owns the loop.

    A connection that outlives its loop warns about a leaked socket. Every orderly loop
    shutdown (asyncio.run, asyncio.Runner: uvicorn's workers, pytest-asyncio's tests)
    closes the async generators still alive on it, so a started generator whose `finally`
    awaits `close()` is a shutdown hook that needs no cooperation from the loop's owner.
    Must be called from code running on that loop.
    """

    async def hook() -> AsyncIterator[None]:
        try:
            yield
        finally:
            _hooks.discard(generator)
            await close()

    generator = hook()
    _hooks.add(generator)
    # Run it to its `yield` now (no await needed: nothing in it suspends before that).
    with contextlib.suppress(StopIteration):
        generator.asend(None).send(None)  # type: ignore[attr-defined]  # a coroutine at run time
