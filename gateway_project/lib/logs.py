"""Log lines as JSON (or plain text), each carrying the request it was emitted for.

settings.LOGGING (`logging_config()`) sends every logger through one console handler
whose formatter comes from `formatter()` (python-json-logger's, or a plain one) and whose filter,
`RequestContextFilter`, adds `request_id`, `tenant` and `route` to every record emitted
while a request is being served: the gateway's own lines and those of any library
(httpx, Django, uvicorn's errors) alike, since the filter sits on the handler, not on a
logger.

What a request is known by lives in one mutable `RequestLogContext` per request, held by
a context variable. The proxy's ASGI handler opens it before it starts the request's
tasks (`open()`), so the tasks it starts, the work deferred until after the response and
the server's own lines about that request all share the one object; the stages fill it
in as they learn the request id, the tenant and the route.
"""

from __future__ import annotations

import contextvars
import logging
import os

from django.core.exceptions import ImproperlyConfigured
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

from gateway_project.lib.env import envbool, envstr

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(tenant)s %(route)s] %(message)s"
_TEXT_DEFAULTS = {"request_id": "-", "tenant": "-", "route": "-"}


class RequestLogContext:
    """What a request is known by so far ("": not yet). Class-level defaults and no
    __init__: made once per request, it should cost no more than an empty object."""

    request_id = ""
    tenant = ""
    route = ""


_current: contextvars.ContextVar[RequestLogContext | None] = contextvars.ContextVar(
    "request_log_context", default=None
)


def open_request() -> None:
    """A fresh context for the request about to be served in this context and its tasks."""
    _current.set(RequestLogContext())


def bind_request(request_id: str) -> None:
    """The request now being served has this id: the context its handler opened, or a new
    one where no handler did (Django's own handlers, the test client), or where the one in
    place belongs to an earlier request."""
    context = _current.get()
    if context is None or context.request_id:
        context = RequestLogContext()
        _current.set(context)
    context.request_id = request_id


def note(*, tenant: str | None = None, route: str | None = None) -> None:
    """What the request being served has been found to be (its tenant, its route)."""
    context = _current.get()
    if context is None:
        return
    if tenant is not None:
        context.tenant = tenant
    if route is not None:
        context.route = route


class RequestContextFilter(logging.Filter):
    """Adds the request's `request_id` to a record emitted while it is served, and its
    `tenant` and `route` once they are known (nothing outside a request: a JSON line has
    no such key then, a text line shows `-`). Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        if context is not None and context.request_id:
            record.request_id = context.request_id
            if context.tenant:
                record.tenant = context.tenant
            if context.route:
                record.route = context.route
        return True


def formatter(kind: str | None = None) -> logging.Formatter:
    """The console formatter: `json` (one object per line: time, level, logger, message,
    the request's fields, exc_info) or `text`. Named by settings.LOGGING; uvicorn's own
    log config (gateway_project/uvicorn_logging.json, for `make serve`'s supervisor, which
    never loads Django) names none and gets GATEWAY_LOG_FORMAT from the environment."""
    if kind is None:  # as settings decide it, from the environment alone
        kind = os.environ.get("GATEWAY_LOG_FORMAT") or ("text" if envbool("DEBUG") else "json")
    if kind == "text":
        return logging.Formatter(TEXT_FORMAT, defaults=_TEXT_DEFAULTS)
    return OrjsonFormatter(
        "{levelname}{name}{message}",
        style="{",
        rename_fields={"levelname": "level", "name": "logger"},
        timestamp="time",
        # uvicorn adds its message again with terminal colours: not for a log shipper.
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
    )


def log_settings(*, debug: bool) -> tuple[str, str, dict]:
    """GATEWAY_LOG_FORMAT, LOG_LEVEL and LOGGING from the environment.

    Console lines are `json` (one object per line, with the request id, tenant and route of
    the request a line was emitted for) or `text`: JSON unless DEBUG is on, because `make
    run` is read by a person in a terminal and a deployment by a log shipper."""
    kind = envstr("GATEWAY_LOG_FORMAT") or ("text" if debug else "json")
    if kind not in ("json", "text"):
        raise ImproperlyConfigured("GATEWAY_LOG_FORMAT must be json or text")
    level = envstr("LOG_LEVEL", "INFO").upper()
    return kind, level, logging_config(kind=kind, level=level)


def logging_config(*, kind: str, level: str) -> dict:
    """settings.LOGGING: every logger through one console handler, in `kind` (json or
    text), at `level` (LOG_LEVEL)."""
    console = {"handlers": ["console"], "level": level, "propagate": False}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"console": {"()": f"{__name__}.formatter", "kind": kind}},
        "filters": {"request": {"()": f"{__name__}.RequestContextFilter"}},
        "handlers": {
            "console": {
                "class": "logging.StreamHandler",
                "formatter": "console",
                "filters": ["request"],
            }
        },
        "root": {"handlers": ["console"], "level": level},
        "loggers": {
            "django.request": {"level": "ERROR"},
            # SQL with its parameters (prompts on their way to the audit table, key
            # hashes) at DEBUG, when DEBUG is on: never, whatever LOG_LEVEL says.
            "django.db.backends": {"level": "INFO"},
            # httpx logs every upstream request at INFO: one line per proxied call.
            "httpx": {"level": "WARNING"},
            "httpcore": {"level": "WARNING"},
            # uvicorn's own handler (plain text) gives way to ours in its workers. Only
            # uvicorn.error, where its lines go: naming "uvicorn" would reset its children,
            # and uvicorn logs access lines whenever uvicorn.access finds a handler,
            # --no-access-log or not (when wanted, its log config formats them:
            # gateway_project/uvicorn_logging.json).
            "uvicorn.error": console,
        },
    }
