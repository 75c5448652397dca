"""ASGI entry point: Channels routes HTTP to Django; a lifespan wrapper flushes the audit log.

Django's own ASGI handler does not speak the lifespan protocol, so servers that send it
(uvicorn in production) get it answered here: on shutdown every queued audit row is
written before the process exits.
"""

from __future__ import annotations

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")

django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.test.utils import override_settings  # noqa: E402

from audit.writer import audit_writer  # noqa: E402


class ProxyASGIHandler(ASGIHandler):
    """The handler for the proxy API (/v1/): only the async request-id middleware.

    Django's built-in middleware (sessions, CSRF, auth, messages, ...) is synchronous: under
    ASGI each one hops to a thread and back for every request, which the benchmark profile
    showed to be about a quarter of the proxy's CPU. The proxy needs none of it (no
    cookies, no sessions, no forms); the admin and the management API keep the full stack.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        with override_settings(MIDDLEWARE=["gateway_project.lib.middleware.RequestIdMiddleware"]):
            super().load_middleware(is_async)


proxy_asgi_app = ProxyASGIHandler()
_router = ProtocolTypeRouter({"http": django_asgi_app})


async def application(scope, receive, send):  # type: ignore[no-untyped-def]
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await audit_writer.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "http" and scope["path"].startswith("/v1/"):
        await proxy_asgi_app(scope, receive, send)
        return
    await _router(scope, receive, send)
