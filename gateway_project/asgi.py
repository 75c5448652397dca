"""ASGI entry point: Channels routes HTTP to Django (and the live traffic stream to its
consumer); a lifespan wrapper runs the audit log.

Django's own ASGI handler does not speak the lifespan protocol, so servers that send it
(uvicorn in production) get it answered here: at startup the audit writer starts (and
replays what a previous run spooled); on shutdown every queued audit row is written, or
spooled to local disk if the database is away, before the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
from typing import Any

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.exceptions import RequestAborted  # noqa: E402
from django.core.handlers.asgi import ASGIHandler, get_script_prefix  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import path, re_path, set_script_prefix  # noqa: E402

from audit.writer import audit_writer  # noqa: E402
from gateway_project.lib import after_response, logs, request_body, tracing  # noqa: E402
from gateway_project.lib.request_body import Receive, Send  # noqa: E402
from routing.live.consumers import LiveTrafficConsumer  # noqa: E402
from routing.live.feed import live_feed  # noqa: E402

# Loaded with the worker, not at its first request: it sets up this server's metric files
# (routing/metrics/instruments.py), which is when a dead worker's live gauges are dropped.
from routing.metrics import background as metrics_background  # noqa: E402


class ProxyASGIHandler(ASGIHandler):
    """The handler for the proxy API (/v1/): Django's request cycle without its thread hops.

    Three things in Django's own ASGI handler cost the proxy a thread hand-off per request,
    together about a third of its CPU in the benchmark profile (bench/README.md):
    - the synchronous built-in middleware (sessions, CSRF, auth, messages, ...): each one
      runs in a thread. The proxy needs none of it (no cookies, sessions or forms), so
      it gets only PROXY_MIDDLEWARE (request id, CORS, 405 in the envelope);
    - `ThreadSensitiveContext` per request, which starts a new executor thread for it;
    - the `request_started` / `request_finished` signals, whose receivers are synchronous
      (`close_old_connections`, `reset_queries`, closing caches) and so run in that
      thread. The proxy never touches the ORM on the request's own context: where it
      reads the database (snapshot rebuilds, a key's first use, budget counter rebuilds)
      it does so in a worker thread that checks its connection before and after
      (`gateway_project.lib.db.off_loop`).
    The admin and the management API keep Django's full handler and middleware.

    It also leaves the body unread until the view asks for it, after authentication and
    with the caller's limit (gateway_project/lib/request_body).
    """

    def load_middleware(self, is_async: bool = False) -> None:
        with override_settings(MIDDLEWARE=settings.PROXY_MIDDLEWARE):
            super().load_middleware(is_async)

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        await self.handle(scope, receive, send)

    async def handle(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        # The body is not read here, as Django's handler would (all of it, spooled to disk
        # past 2.5 MB): the view authenticates from the headers first, then receives the
        # body up to the caller's limit (gateway_project/lib/request_body).
        # The request's log context, opened here so that the tasks below, the work deferred
        # until after the response and the server's own lines share it (lib/logs.py).
        logs.open_request()
        body = request_body.PendingBody.from_scope(scope, receive)
        set_script_prefix(get_script_prefix(scope))
        request, error_response = self.create_request(
            scope,
            request_body.NOT_RECEIVED_YET,  # type: ignore[arg-type]  # a body file that is not one
        )
        if request is None:
            assert error_response is not None  # create_request returns one or the other
            await self.send_response(error_response, send)
            return
        request.pending_body = body  # type: ignore[attr-defined]  # read back by request_body

        # Work the request owes after its answer (the budget settlement): run below, once
        # the response is out, still within this call (gateway_project/lib/after_response).
        deferred: list[after_response.Deferred] = []

        async def process_request() -> None:
            after_response.collect_into(deferred)
            response = await self.run_get_response(request)
            if body.left_unread:
                # Refused before (or while) its body was received: close the connection
                # after the answer, or the server would go on reading the rest of it.
                response["Connection"] = "close"
            with contextlib.suppress(asyncio.CancelledError):  # the client left mid-send
                await self.send_response(response, send)

        async def listen_for_disconnect() -> None:
            # The body and a disconnect come through the same `receive`: listen only once
            # the body is in (or the client left while sending it).
            await body.ended.wait()
            if body.disconnected:
                raise RequestAborted
            await self.listen_for_disconnect(receive)

        # As in Django's handler: a client that disconnects cancels the view, which
        # abandons the upstream call and still writes its audit row (routing.proxy.handler).
        listening = asyncio.create_task(listen_for_disconnect())
        processing = asyncio.create_task(process_request())
        try:
            await asyncio.wait((listening, processing), return_when=asyncio.FIRST_COMPLETED)
            for task in (listening, processing):
                if not task.done():
                    task.cancel()
                with contextlib.suppress(asyncio.CancelledError, RequestAborted):
                    await task
        finally:
            request.close()
            await after_response.run(deferred)


def _freeze_the_startup_heap() -> None:
    """Keep Python's full garbage collections short (called once a worker has started).

    A full collection walks every container object the process holds: in a warm worker
    about 140,000, nearly all of them Django, ninja and the other imports, which live as
    long as the process. That took 130-140 ms, a stall of every request in flight that
    came back every few thousand requests (the bench's p99 and max). Moving what exists
    at startup out of the collector's sight (gc.freeze) leaves it what the worker made
    since: a full collection then took 4-7 ms. In-process, 6,000 requests one at a time:
    the slowest took 135-143 ms without the freeze and 11-15 ms with it (p50 and p99
    unchanged). (A larger first-generation threshold was tried too: each young
    collection then took long enough to double the p99 at one connection.)
    """
    gc.collect()
    gc.freeze()


proxy_asgi_app = ProxyASGIHandler()
# Spans exported over OTLP when an endpoint is configured; otherwise tracing stays off and
# costs the request path nothing (gateway_project/lib/tracing.py).
tracing.configure()
# The live traffic page's event stream is a Channels consumer that stays open while its
# watcher does, with the admin's session login (routing/live/consumers.py); the rest of
# the admin, the management API and the landing page are Django's.
_router = ProtocolTypeRouter(
    {
        "http": URLRouter(
            [
                path(
                    "admin/live/stream/",
                    AuthMiddlewareStack(LiveTrafficConsumer.as_asgi()),
                ),
                re_path(r"", django_asgi_app),  # type: ignore[arg-type]  # an ASGI app: Channels' URLRouter takes those
            ]
        )
    }
)


async def application(scope: dict[str, Any], receive: Receive, send: Send) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _freeze_the_startup_heap()
                # Now, not at the first request: rows a previous run spooled (a shutdown
                # while the database was away) are replayed even before any traffic.
                audit_writer.start()
                if settings.GATEWAY_METRICS_ENABLED:
                    metrics_background.ensure_started()  # writes the metric files
                # From the start, so that a watcher sees this worker's first request too.
                live_feed.start_checking()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await after_response.drain()  # settlements still in flight finish first
                await audit_writer.aclose()
                metrics_background.flush()  # the last requests' counts, before the exit
                await asyncio.to_thread(tracing.shutdown)  # exports the spans still queued
                await send({"type": "lifespan.shutdown.complete"})
                return
    # /metrics too: a scraper needs no session or CSRF, and Django's full handler would run
    # each scrape's database reads (a snapshot rebuild) on a thread, and connection, of its own.
    if scope["type"] == "http" and (
        scope["path"].startswith("/v1/") or scope["path"] == "/metrics"
    ):
        await proxy_asgi_app(scope, receive, send)
        return
    await _router(scope, receive, send)
