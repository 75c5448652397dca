"""The live traffic stream: Server-Sent Events from the channel layer's group, for staff.

`GET /admin/live/stream/?tenant=<slug>&status=<ok|error|2xx|4xx|5xx|code>` (routed in
gateway_project/asgi.py, behind channels' session authentication). A staff user with
`routing.view_live_traffic` gets `text/event-stream`: one `event: request` per finished
request that passes the filters (filtered here, so a watcher of one tenant is sent
nothing of the others), and a comment line every LIVE_TRAFFIC_HEARTBEAT_SECONDS so that
proxies do not close an idle stream. Anyone else gets 403; a bad filter gets 400.

AsyncHttpConsumer ends the response once `handle()` returns; an event stream instead
stays open until the client goes (http.disconnect), and only then leaves the group.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.http import AsyncHttpConsumer
from django.conf import settings

from routing.live.events import FilterError, LiveFilter
from routing.live.feed import (
    GROUP,
    MESSAGE_TYPE,
    PRESENCE_REFRESH_SECONDS,
    announce_watching,
    live_feed,
)

PERMISSION = "routing.view_live_traffic"
STREAM_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache, no-store"),
    # nginx and friends would buffer the stream otherwise.
    (b"x-accel-buffering", b"no"),
]
JSON = [(b"content-type", b"application/json")]
logger = logging.getLogger(__name__)


@database_sync_to_async
def may_watch(user: Any) -> bool:
    """Staff with the permission (the admin's own rule: an active staff account)."""
    if user is None or not user.is_active or not user.is_staff:
        return False
    return bool(user.has_perm(PERMISSION))


def error_body(message: str, *, type_: str, code: str) -> bytes:
    """The project's error envelope (CONTRACT.md)."""
    return orjson.dumps({"error": {"message": message, "type": type_, "param": None, "code": code}})


def sse_event(event: dict[str, Any]) -> bytes:
    return b"event: request\ndata: " + orjson.dumps(event) + b"\n\n"


class LiveTrafficConsumer(AsyncHttpConsumer):
    streaming = False
    _ticker: asyncio.Task | None = None

    async def handle(self, body: bytes) -> None:
        if not await may_watch(self.scope.get("user")):
            message = "Watching live traffic needs a staff login with view_live_traffic."
            await self.send_response(
                403,
                error_body(message, type_="permission_error", code="forbidden"),
                headers=JSON,
            )
            return
        try:
            self.filters = LiveFilter.from_query(self.scope.get("query_string", b""))
        except FilterError as exc:
            await self.send_response(
                400,
                error_body(str(exc), type_="invalid_request_error", code="invalid_filter"),
                headers=JSON,
            )
            return
        self._send_lock = asyncio.Lock()
        try:
            await self.channel_layer.group_add(GROUP, self.channel_name)
            await announce_watching()
        except Exception as exc:
            logger.warning("live traffic: could not join the feed: %r", exc)
            await self.send_response(
                503,
                error_body("Live traffic is unavailable.", type_="api_error", code="unavailable"),
                headers=JSON,
            )
            return
        self.streaming = True
        live_feed.watcher_joined()
        await self.send_headers(headers=STREAM_HEADERS)
        # `retry`: how long the browser waits before reconnecting after a dropped stream.
        await self._send(b"retry: 3000\n: watching live traffic\n\n")
        self._ticker = asyncio.create_task(self._tick())

    async def http_request(self, message: dict[str, Any]) -> None:
        """As AsyncHttpConsumer's, except that an open stream outlives `handle()`."""
        if "body" in message:
            self.body.append(message["body"])
        if message.get("more_body"):
            return
        try:
            await self.handle(b"".join(self.body))
        except BaseException:
            await self.disconnect()
            raise
        if not self.streaming:
            await self.disconnect()
            raise StopConsumer

    async def dispatch(self, message: dict[str, Any]) -> None:
        # The base class closes stale database connections before every message, a thread
        # hand-off each time; a batch of requests needs no database.
        if message["type"] == MESSAGE_TYPE:
            await self.live_requests(message)
        else:
            await super().dispatch(message)

    async def live_requests(self, message: dict[str, Any]) -> None:
        if not self.streaming:
            return
        matches = self.filters.matches
        chunk = b"".join(sse_event(event) for event in message["requests"] if matches(event))
        if chunk:
            await self._send(chunk)

    async def _tick(self) -> None:
        """Heartbeats to the client; presence and group membership renewed in Redis."""
        heartbeat = settings.LIVE_TRAFFIC_HEARTBEAT_SECONDS
        loop = asyncio.get_running_loop()
        next_beat = loop.time() + heartbeat
        while True:
            await asyncio.sleep(min(PRESENCE_REFRESH_SECONDS, heartbeat))
            try:
                await announce_watching()
                await self.channel_layer.group_add(GROUP, self.channel_name)
            except Exception as exc:  # Redis away for a moment: the stream stays open
                logger.warning("live traffic: could not renew a watcher: %r", exc)
            if loop.time() >= next_beat:
                next_beat = loop.time() + heartbeat
                try:
                    await self._send(b": keep-alive\n\n")
                except Exception:  # the client is gone: http.disconnect will follow
                    return

    async def _send(self, chunk: bytes) -> None:
        # The heartbeat task and the group's messages both write to the one response.
        async with self._send_lock:
            await self.send_body(chunk, more_body=True)

    async def disconnect(self) -> None:
        if not self.streaming:
            return
        self.streaming = False
        live_feed.watcher_left()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
        with contextlib.suppress(Exception):  # the layer's own expiry drops us otherwise
            await self.channel_layer.group_discard(GROUP, self.channel_name)
