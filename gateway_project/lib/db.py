"""Database work from async code that runs outside Django's request signals."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections

T = TypeVar("T")


def _with_fresh_connection(fn: Callable[[], T]) -> T:
    # What request_started / request_finished would do around a request: drop a
    # connection that broke or outlived CONN_MAX_AGE, before and after the work.
    close_old_connections()
    try:
        return fn()
    finally:
        close_old_connections()


async def off_loop(fn: Callable[[], T], *, thread_sensitive: bool = True) -> T:
    """Run the synchronous ORM function `fn` in a worker thread, keeping its connection
    healthy: the proxy's lean ASGI handler sends no request signals (gateway_project.asgi)."""
    return await sync_to_async(_with_fresh_connection, thread_sensitive=thread_sensitive)(fn)
