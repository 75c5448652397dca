"""The process's live traffic feed (routing/live/feed.py): nothing while nobody watches, a
bounded queue published off the response path while somebody does, and watchers in other
processes noticed through the presence key in Redis."""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import redis
from channels.layers import get_channel_layer

from audit.row import AuditRow
from routing.live.feed import GROUP, MESSAGE_TYPE, PRESENCE_KEY, live_feed
from tests.routing.proxy.test_hot_path_cost import ask, count_redis_round_trips


def a_row(n: int = 0) -> AuditRow:
    return AuditRow(
        request_id=f"req_{n}",
        created_at=datetime.now(UTC),
        tenant_slug="acme",
        route_id=1,
        route="acme-private",
        provider="local",
        model="echo",
        outcome="success",
        status_code=200,
        latency_ms=12,
        prompt_tokens=5,
        completion_tokens=7,
        total_tokens=12,
        cost_usd=Decimal("0.0000123"),
        prompt=[{"role": "user", "content": "secret"}],
        response="secret",
    )


async def listen(layer) -> str:
    channel = await layer.new_channel()
    await layer.group_add(GROUP, channel)
    return channel


async def test_nobody_watching_costs_a_request_no_queue_no_task_and_no_redis_command(
    personas, channel_layer
):
    published = live_feed.published
    await ask(personas.globex.plaintext_key, "echo")  # the process checks for watchers now
    with count_redis_round_trips() as sent:
        for _ in range(5):
            await ask(personas.globex.plaintext_key, "echo")  # ungoverned: no command of its own
    await asyncio.sleep(0.3)  # past a flush interval
    assert sent == []
    assert live_feed.active is False
    assert len(live_feed._pending) == 0 and live_feed._flush is None
    assert live_feed.published == published


async def test_rows_are_published_in_one_batch_after_the_request_has_returned(channel_layer):
    layer = get_channel_layer()
    channel = await listen(layer)
    live_feed.watcher_joined()
    for n in range(3):
        live_feed.offer(a_row(n))
    # offer() only queued them: nothing reached the layer yet.
    assert len(live_feed._pending) == 3
    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert message["type"] == MESSAGE_TYPE
    assert [event["id"] for event in message["requests"]] == ["req_0", "req_1", "req_2"]
    assert message["requests"][0]["cost_usd"] == "0.0000123"  # the Decimal, as text
    assert "secret" not in repr(message)
    await layer.group_discard(GROUP, channel)


async def test_a_full_queue_drops_rows_rather_than_waiting(channel_layer, settings):
    settings.LIVE_TRAFFIC_QUEUE_MAX = 3
    layer = get_channel_layer()
    channel = await listen(layer)
    live_feed.watcher_joined()
    dropped = live_feed.dropped
    for n in range(5):
        live_feed.offer(a_row(n))
    assert live_feed.dropped - dropped == 2
    message = await asyncio.wait_for(layer.receive(channel), 5)
    assert [event["id"] for event in message["requests"]] == ["req_0", "req_1", "req_2"]
    await layer.group_discard(GROUP, channel)


async def test_a_channel_layer_that_is_away_loses_the_batch_quietly(settings, caplog):
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": ["redis://127.0.0.1:1/0"]},
        }
    }
    live_feed.watcher_joined()
    live_feed._last_warning = 0.0
    published = live_feed.published
    with caplog.at_level(logging.WARNING, logger="routing.live.feed"):
        live_feed.offer(a_row())
        await live_feed.flush()
    assert live_feed.published == published
    assert "could not publish 1 requests" in caplog.text
    assert len(live_feed._pending) == 0


def wait_for(condition, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return False


def test_a_watcher_in_another_process_is_noticed_within_a_check(settings):
    if not settings.REDIS_URL:
        pytest.skip("needs a real Redis (REDIS_URL)")
    settings.LIVE_TRAFFIC_CHECK_SECONDS = 0.05
    client = redis.Redis.from_url(settings.REDIS_URL)
    live_feed.offer(a_row())  # the first request starts the process's checks
    assert live_feed.active is False
    client.set(PRESENCE_KEY, b"1", ex=10)  # what a watcher's consumer in any process does
    assert wait_for(lambda: live_feed.active)
    client.delete(PRESENCE_KEY)  # its TTL ran out: the watcher has gone
    assert wait_for(lambda: not live_feed.active)
