"""The proxy request's body, received only when the view asks for it, up to a limit.

Django's ASGI handler reads the whole body before the view runs, into a temporary file
that rolls over to disk: a 2 GB chunked upload with no key was read in full, and spooled,
before its 401. The proxy handler (gateway_project/asgi.py) instead hands the view a
`PendingBody`; the view authenticates from the headers, then awaits `read()` with the
caller's limit. So a refused caller costs no body at all, a declared Content-Length over
the limit is refused before a byte is received, and a chunked body is received in memory
only until it passes the limit. A body left unread (or cut off at the limit) ends the
connection after the answer, so the server never reads the rest of it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest

from gateway_project.lib import errors

# The ASGI callables, typed as Django's handler types them.
Receive = Callable[[], Awaitable[Mapping[str, Any]]]
Send = Callable[[Mapping[str, Any]], Awaitable[None]]


class _NotReceivedYet:
    """Stands in for the body file of a request whose body is received on demand: a view
    that reads `request.body` before awaiting `read()` is a bug, and says so."""

    def read(self, *args: object) -> bytes:
        raise RuntimeError("a /v1/ request's body is received with `await request_body.read()`")

    def close(self) -> None:
        pass


NOT_RECEIVED_YET = _NotReceivedYet()


class PendingBody:
    """An ASGI request body that has not been received yet."""

    def __init__(self, receive: Receive, *, declared_length: int | None, has_body: bool) -> None:
        self._receive = receive
        self.declared_length = declared_length
        self.has_body = has_body
        self.received = False  # every byte the client sent has been received
        self.disconnected = False
        # Set once nothing more will be received for the body: it is complete, or the
        # client left. Only then may the handler listen for a disconnect.
        self.ended = asyncio.Event()

    @classmethod
    def from_scope(cls, scope: dict, receive: Receive) -> PendingBody:
        length: int | None = None
        chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                length = int(value) if value.isdigit() else None
            elif name == b"transfer-encoding":
                chunked = True
        return cls(receive, declared_length=length, has_body=chunked or bool(length))

    @property
    def left_unread(self) -> bool:
        """The client declared a body this process has not (fully) received."""
        return self.has_body and not self.received and not self.disconnected

    async def read(self, limit: int) -> bytes:
        """The whole body, or a 413 as soon as it is known to be over `limit` bytes."""
        if self.declared_length is not None and self.declared_length > limit:
            raise errors.payload_too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self.ended.set()
                # The handler's disconnect listener now cancels the view, which records
                # the request as cancelled; until it does, there is nothing to return.
                await asyncio.Event().wait()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise errors.payload_too_large(limit)  # the rest is never received
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        self.received = True
        self.ended.set()
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def read(request: HttpRequest, *, limit: int | None = None) -> bytes:
    """The request's body, refusing (413) more than `limit` bytes (GATEWAY_MAX_BODY_BYTES
    by default) before receiving them."""
    limit = settings.GATEWAY_MAX_BODY_BYTES if limit is None else limit
    pending: PendingBody | None = getattr(request, "pending_body", None)
    if pending is None:
        # Django's own handler or the test client: the body is already in memory.
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            raise errors.payload_too_large(limit)
        try:
            raw = request.body
        except RequestDataTooBig as exc:
            raise errors.payload_too_large(limit) from exc
        if len(raw) > limit:
            raise errors.payload_too_large(limit)
        return raw
    if not pending.received:
        request._body = await pending.read(limit)
    raw = request.body
    if len(raw) > limit:
        raise errors.payload_too_large(limit)
    return raw
