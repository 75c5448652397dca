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

from audit.writer import audit_writer  # noqa: E402

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
    await _router(scope, receive, send)
