"""Work a request still owes once its answer has been sent (its budget settlement).

The proxy's ASGI handler (`gateway_project/asgi.py`) opens a list for each request, sends
the response, and then runs what was deferred into it, inside the same ASGI call: the
client has its answer (and may send its next request on the connection) without waiting,
and the server still counts the request as in flight until the work is done, so a
graceful shutdown waits for it.

Anywhere else (Django's own handlers, the test client), `defer()` runs the work at once,
so nothing is ever left undone for want of a handler that would run it.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)
Deferred = Callable[[], Awaitable[None]]
_pending: contextvars.ContextVar[list[Deferred] | None] = contextvars.ContextVar(
    "after_response", default=None
)
_running: set[asyncio.Future] = set()  # kept from the GC, and awaited at shutdown


def collect_into(pending: list[Deferred]) -> None:
    """From now on in this context (the request's task), `defer()` appends to `pending`."""
    _pending.set(pending)


async def defer(work: Deferred) -> None:
    """Run `work` after the response is sent when the handler allows it, else now."""
    pending = _pending.get()
    if pending is None:
        await run([work])
    else:
        pending.append(work)


async def run(pending: list[Deferred]) -> None:
    """Run what was deferred, in order, to the end even if the caller is cancelled (a
    settlement cut short would leave its reservation held until it expires): a cancelled
    caller stops waiting, the work goes on."""
    if pending:
        await asyncio.shield(start(pending))


def start(pending: list[Deferred]) -> asyncio.Future:
    """Start running `pending` (emptied) on its own, now: the task outlives the caller's
    cancellation, and the server's shutdown waits for it (`drain()`)."""
    task = asyncio.ensure_future(_run_all(list(pending)))
    pending.clear()
    _running.add(task)
    task.add_done_callback(_running.discard)
    return task


async def _run_all(pending: list[Deferred]) -> None:
    for work in pending:
        try:
            await work()
        except Exception:
            logger.exception("work deferred until after the response failed")


async def drain() -> None:
    """Wait for deferred work still running (the server's shutdown, before the audit log
    is flushed)."""
    while _running:
        await asyncio.gather(*_running, return_exceptions=True)
