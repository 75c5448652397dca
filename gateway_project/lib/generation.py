"""A cross-process "configuration changed" signal: the config generation.

Every process keeps the gateway configuration in memory; a write in the admin (or any
service) sets a new generation token, and each process compares it with the token its
snapshot was built from at most once per GATEWAY_SNAPSHOT_CHECK_SECONDS. With Redis the
token is a Redis key (shared by every replica); without it, a file in GATEWAY_STATE_DIR
(shared by every process on the machine, which is all the embedded SQLite setup has).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from pathlib import Path

from django.conf import settings

REDIS_KEY = "gw:config:generation"


def _file() -> Path:
    return Path(settings.STATE_DIR) / "config.generation"


_sync_client = None


def _redis():
    global _sync_client
    if _sync_client is None:
        import redis

        _sync_client = redis.Redis.from_url(
            settings.REDIS_URL,
            socket_timeout=settings.GATEWAY_REDIS_TIMEOUT_SECONDS,
            socket_connect_timeout=settings.GATEWAY_REDIS_TIMEOUT_SECONDS,
        )
    return _sync_client


def bump() -> None:
    """Tell every process that the configuration changed.

    The generation is a fresh random token, not a counter: a counter restarted by a Redis
    flush could climb back to the very value a process holds, and that process would miss
    the change.
    """
    token = uuid.uuid4().hex
    if settings.REDIS_URL:
        _redis().set(REDIS_KEY, token)
        return
    path = _file()
    # A private temporary name: concurrent bumps must not rename each other's file away.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(token)
    os.replace(tmp, path)


def _read_file() -> str:
    try:
        return _file().read_text()
    except FileNotFoundError:
        return "0"


def current() -> str:
    if settings.REDIS_URL:
        value = _redis().get(REDIS_KEY)
        return value.decode() if value else "0"
    return _read_file()


async def acurrent() -> str:
    if settings.REDIS_URL:
        from gateway_project.lib.redis_client import execute

        value = await execute("GET", REDIS_KEY)
        return value.decode() if value else "0"
    return _read_file()


def monotonic() -> float:
    return time.monotonic()
