"""A cross-process "configuration changed" signal: the config generation.

Every process keeps the gateway configuration in memory; a write in the admin (or any
service) sets a new generation token, and each process compares it with the token its
snapshot was built from at most once per GATEWAY_SNAPSHOT_CHECK_SECONDS. With Redis the
token is a Redis key (shared by every replica); without it, a file in GATEWAY_STATE_DIR
(shared by every process on the machine, which is all the embedded SQLite setup has).
A token that could not be written is retried in the background until it is.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    import redis

REDIS_KEY = "gw:config:generation"
logger = logging.getLogger(__name__)


def _file() -> Path:
    return Path(settings.STATE_DIR) / "config.generation"


_sync_client: redis.Redis | None = None


def _redis() -> redis.Redis:
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

    The change is already committed when this runs, so it must not be lost if Redis (or
    the state directory) fails at that moment: the error is raised for the caller to log,
    and a background thread keeps trying, with backoff, until a new token is written.
    (Every snapshot is also rebuilt after GATEWAY_SNAPSHOT_MAX_AGE_SECONDS whatever the
    token says, so even a process that exits with a bump still owed is caught up.)
    """
    try:
        _write_new_token()
    except Exception:
        _retry_in_background()
        raise


def _write_new_token() -> None:
    token = uuid.uuid4().hex
    if settings.REDIS_URL:
        _redis().set(REDIS_KEY, token)
        return
    path = _file()
    # A private temporary name: concurrent bumps must not rename each other's file away.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(token)
    os.replace(tmp, path)


_retry_lock = threading.Lock()
_retry_owed = False  # a bump failed and no token has been written since
_retrier: threading.Thread | None = None
RETRY_FIRST_DELAY_SECONDS = 0.1
RETRY_MAX_DELAY_SECONDS = 5.0


def bump_owed() -> bool:
    return _retry_owed


def _retry_in_background() -> None:
    global _retry_owed, _retrier
    with _retry_lock:
        _retry_owed = True
        if _retrier is None:
            _retrier = threading.Thread(
                target=_retry_until_written, name="config-generation-retry", daemon=True
            )
            _retrier.start()


def _retry_until_written() -> None:
    global _retry_owed, _retrier
    delay = RETRY_FIRST_DELAY_SECONDS
    while True:
        time.sleep(delay)
        with _retry_lock:
            # Cleared before the write: a bump failing during it owes another one.
            _retry_owed = False
        try:
            _write_new_token()
        except Exception:
            with _retry_lock:
                _retry_owed = True
            delay = min(delay * 2, RETRY_MAX_DELAY_SECONDS)
            logger.warning("config generation still not announced; retrying in %.1f s", delay)
            continue
        with _retry_lock:
            if not _retry_owed:
                _retrier = None  # under the lock: a failing bump now starts a new thread
                logger.info("config generation announced after a failed attempt")
                return
        delay = RETRY_FIRST_DELAY_SECONDS


@atexit.register
def _last_attempt_at_exit() -> None:
    """A management command that changed the configuration may exit with its bump still
    owed: one last try (the snapshots' maximum age covers it if this fails too)."""
    if _retry_owed:
        with contextlib.suppress(Exception):
            _write_new_token()


def _read_file() -> str:
    try:
        return _file().read_text()
    except FileNotFoundError:
        return "0"


def current() -> str:
    if settings.REDIS_URL:
        value = _redis().get(REDIS_KEY)  # bytes or None: the client does not decode
        return value.decode() if isinstance(value, bytes) and value else "0"
    return _read_file()


async def acurrent() -> str:
    if settings.REDIS_URL:
        from gateway_project.lib.redis_client import execute

        value = await execute("GET", REDIS_KEY)
        return value.decode() if value else "0"
    return _read_file()


def monotonic() -> float:
    return time.monotonic()
