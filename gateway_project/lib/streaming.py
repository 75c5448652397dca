"""A streamed response whose synchronous content stays streamed under ASGI.

Django's ASGI handler serves a StreamingHttpResponse over a synchronous iterator by first
reading all of it into a list (with a warning), in one thread hop: a CSV of a million
ledger lines would sit whole in memory before its first byte left. This response pulls
the next chunk in the request's thread instead, one hop per chunk, so memory stays one
chunk whatever the size; the chunks come from code that reads the database through a
server-side cursor, which must stay on the thread (and connection) that opened it.
Under WSGI (and Django's test client) it iterates as usual.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.http import StreamingHttpResponse


def _next_chunk(chunks: Iterator[bytes]) -> bytes | None:
    return next(chunks, None)


class SyncStreamingResponse(StreamingHttpResponse):
    """StreamingHttpResponse over a synchronous iterator, streamed under ASGI too."""

    def __init__(self, streaming_content: Iterator[Any], *args: Any, **kwargs: Any) -> None:
        super().__init__(streaming_content, *args, **kwargs)
        self["X-Accel-Buffering"] = "no"  # nginx: pass chunks on as they come

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self.streaming_content
        if not isinstance(content, Iterator):  # asynchronous already: nothing to hop over
            async for part in content:
                yield part
            return
        # thread_sensitive: the request's own thread, the one its view (and its database
        # connection) ran on.
        pull = sync_to_async(_next_chunk, thread_sensitive=True)
        while (chunk := await pull(content)) is not None:
            yield chunk
