"""The live traffic page's fixtures: nobody watching before and after each test, and the
channel layer to test the stream on (the in-memory one, and channels-redis on the real
Redis when REDIS_URL is set)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
import redis
from channels.layers import get_channel_layer
from django.conf import settings as django_settings

from routing.live.feed import PRESENCE_KEY, live_feed

LAYERS = {
    "memory": {"BACKEND": "channels.layers.InMemoryChannelLayer"},
    "redis": {
        "BACKEND": "channels_redis.core.RedisChannelLayer",
        # A prefix of its own: flushed after each test without touching the gateway's keys.
        "CONFIG": {"hosts": [], "prefix": "gw:test-asgi", "group_expiry": 60},
    },
}


def forget_watchers() -> None:
    """No presence key in Redis, and this process's feed back to idle."""
    if django_settings.REDIS_URL:
        redis.Redis.from_url(django_settings.REDIS_URL).delete(PRESENCE_KEY)
    live_feed.forget()


@pytest.fixture(autouse=True)
def nobody_watching() -> Iterator[None]:
    forget_watchers()
    yield
    forget_watchers()


@pytest.fixture(params=["memory", "redis"])
async def channel_layer(request, settings) -> AsyncIterator[str]:
    """The layer the stream and the feed use in this test: its name."""
    config = dict(LAYERS[request.param])
    if request.param == "redis":
        if not settings.REDIS_URL:
            pytest.skip("needs a real Redis (REDIS_URL)")
        config["CONFIG"] = {**config["CONFIG"], "hosts": [settings.REDIS_URL]}
    settings.CHANNEL_LAYERS = {"default": config}
    yield request.param
    layer = get_channel_layer()
    if request.param == "redis":
        await layer.flush()
