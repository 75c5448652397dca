"""One process's live traffic feed: finished requests into the channel layer's group, and
only while somebody watches.

While nobody watches, a request costs the test of one flag (`active`, read by
routing/proxy/finished.py): no call, no Redis round trip, no allocation. Who
watches is known in two ways. A watcher in this process (the consumer) says so directly
(`watcher_joined` / `watcher_left`). Watchers anywhere keep `PRESENCE_KEY` alive in Redis
(`announce_watching`, a key with a short TTL), and a daemon thread of each process
re-reads it every LIVE_TRAFFIC_CHECK_SECONDS: a thread with a blocking client, so the
event loop never sees it. Without REDIS_URL the channel layer is in memory, so only a
watcher in this very process can receive anything, and no thread is started.

While somebody watches, `offer()` appends the row to a bounded queue (past
LIVE_TRAFFIC_QUEUE_MAX it is dropped and counted, never waited for), and a task on the
event loop publishes what gathered every FLUSH_SECONDS, as one group message: a batch
costs one channel-layer call, whatever the traffic. The events are built there, off the
response path (events.live_event reads only names, counts and timings).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque

from channels.layers import get_channel_layer
from django.conf import settings

from audit.row import AuditRow
from gateway_project.lib import redis_client
from routing.live.events import live_event

GROUP = "live-traffic"
MESSAGE_TYPE = "live.requests"  # handled by LiveTrafficConsumer.live_requests
PRESENCE_KEY = "gw:live:watching"
PRESENCE_TTL_SECONDS = 10
# How often a watcher renews the key (and its group membership: settings' group_expiry).
PRESENCE_REFRESH_SECONDS = 3.0
FLUSH_SECONDS = 0.1
BATCH_MAX = 500  # events per group message
SEND_TIMEOUT_SECONDS = 2.0
_LOG_EVERY_SECONDS = 60.0

logger = logging.getLogger(__name__)


class LiveFeed:
    def __init__(self) -> None:
        # The only thing the response path reads (routing/proxy/finished.py) before calling
        # offer(). True until the checks have started, so that the first request starts
        # them; from then on, whether anybody watches.
        self.active = True
        self.dropped = 0  # rows not published: the queue was full
        self.published = 0
        self._local_watchers = 0
        self._watched_elsewhere = False
        self._pending: deque[AuditRow] = deque()
        self._queue_max = 0  # LIVE_TRAFFIC_QUEUE_MAX, read when watching starts
        self._flush: asyncio.Task | None = None
        self._checking = False
        self._epoch = 0  # a check started before forget() does not count
        self._lock = threading.Lock()
        self._last_warning = 0.0

    # --- the response path ----------------------------------------------------------------
    def offer(self, row: AuditRow) -> None:
        """A request finished (called only while `active`). Never raises, never waits."""
        if not self._checking:
            self.start_checking()
        if not self.active:
            return
        try:
            pending = self._pending
            if len(pending) >= self._queue_max:
                self.dropped += 1
                return
            pending.append(row)
            if self._flush is None:
                self._flush = asyncio.get_running_loop().create_task(self._flush_soon())
        except RuntimeError:  # no event loop to publish from: the next request's will
            pass
        except Exception:  # a failure here must not cost the caller its answer
            logger.exception("live traffic: could not queue a request")

    # --- publishing, off the response path ------------------------------------------------
    async def _flush_soon(self) -> None:
        try:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()
        finally:
            self._flush = None

    async def flush(self) -> None:
        """Publish what is queued now (tests call it to skip the wait)."""
        pending = self._pending
        while pending:
            events: list[dict] = []
            while pending and len(events) < BATCH_MAX:
                events.append(live_event(pending.popleft()))
            try:
                async with asyncio.timeout(SEND_TIMEOUT_SECONDS):
                    await get_channel_layer().group_send(
                        GROUP, {"type": MESSAGE_TYPE, "requests": events}
                    )
                self.published += len(events)
            except Exception as exc:  # Redis away or stalled: these events are lost
                self._warn("could not publish %d requests: %r", len(events), exc)

    # --- who watches ----------------------------------------------------------------------
    def watcher_joined(self) -> None:
        with self._lock:
            self._local_watchers += 1
            self._update()

    def watcher_left(self) -> None:
        with self._lock:
            self._local_watchers = max(0, self._local_watchers - 1)
            self._update()

    def watched_elsewhere(self, watched: bool, *, epoch: int | None = None) -> None:
        with self._lock:
            if epoch is None or epoch == self._epoch:
                self._watched_elsewhere = watched
                self._update()

    def forget(self) -> None:
        """As if nobody watched, here or anywhere, until the next check says otherwise."""
        self.start_checking()
        with self._lock:
            self._epoch += 1
            self._local_watchers = 0
            self._watched_elsewhere = False
            self._update()

    def _update(self) -> None:
        watched = self._local_watchers > 0 or self._watched_elsewhere
        self.active = watched or not self._checking
        self._queue_max = settings.LIVE_TRAFFIC_QUEUE_MAX
        if not watched:
            self._pending.clear()
        flush = self._flush
        # A flush task of a loop that has closed (tests run one loop each) never runs again.
        if flush is not None and flush.get_loop().is_closed():
            self._flush = None

    def start_checking(self) -> None:
        """Started when a server process starts (the ASGI lifespan), else by the first
        request the process finishes; not at import: management commands and Celery
        workers never need it."""
        with self._lock:
            if self._checking:
                return
            self._checking = True
            self._update()
        if settings.REDIS_URL:
            threading.Thread(target=self._check_forever, name="live-traffic", daemon=True).start()

    def _check_forever(self) -> None:
        import redis

        timeout = settings.GATEWAY_REDIS_TIMEOUT_SECONDS
        client = redis.Redis.from_url(
            settings.REDIS_URL, socket_timeout=timeout, socket_connect_timeout=timeout
        )
        while True:
            epoch = self._epoch
            try:
                watched = bool(client.exists(PRESENCE_KEY))
            except Exception as exc:  # Redis away: nobody can be watching through it
                self._warn("could not read whether anyone watches: %r", exc)
                watched = False
            self.watched_elsewhere(watched, epoch=epoch)
            time.sleep(settings.LIVE_TRAFFIC_CHECK_SECONDS)

    def _warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._last_warning >= _LOG_EVERY_SECONDS:
            self._last_warning = now
            logger.warning("live traffic: " + message, *args)


async def announce_watching() -> None:
    """A watcher is connected here: tell every process (a no-op without Redis, where
    only this process's requests can reach the in-memory channel layer anyway)."""
    if settings.REDIS_URL:
        await redis_client.async_client().set(PRESENCE_KEY, b"1", ex=PRESENCE_TTL_SECONDS)


live_feed = LiveFeed()
