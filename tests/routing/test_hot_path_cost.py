"""The structure that makes the proxy fast, asserted directly: once warm, a request makes
no database query and a fixed, small number of Redis round trips."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import orjson
import pytest
import redis.asyncio
from django.test import AsyncClient

from billing.governance import governor
from billing.models import Budget, RateLimit
from gateway_project.lib.redis_pipe import PipelinedRedis
from tests import factories
from tests.conftest import count_queries_everywhere

pytestmark = pytest.mark.django_db(transaction=True)
USER = [{"role": "user", "content": "Hello there"}]


@contextmanager
def count_redis_round_trips() -> Iterator[list[str]]:
    """Every command any asyncio Redis client sends (a Lua script call is one): redis-py's
    (fakeredis without REDIS_URL) and the proxy path's pipelined connection."""
    sent: list[str] = []
    original_command = redis.asyncio.Redis.execute_command
    original_pipe = PipelinedRedis.execute

    async def execute_command(self, *args, **options):  # type: ignore[no-untyped-def]
        sent.append(str(args[0]))
        return await original_command(self, *args, **options)

    async def execute_on_pipe(self, *args):  # type: ignore[no-untyped-def]
        sent.append(str(args[0]))
        return await original_pipe(self, *args)

    redis.asyncio.Redis.execute_command = execute_command  # type: ignore[method-assign]
    PipelinedRedis.execute = execute_on_pipe  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        redis.asyncio.Redis.execute_command = original_command  # type: ignore[method-assign]
        PipelinedRedis.execute = original_pipe  # type: ignore[method-assign]


@pytest.fixture
def world(transactional_db, settings):
    # Keep the periodic checks (config generation, circuit states) out of the window.
    settings.GATEWAY_SNAPSHOT_CHECK_SECONDS = 60
    settings.GATEWAY_CIRCUIT_CACHE_SECONDS = 60
    tenant = factories.make_tenant("fast")
    local = factories.make_provider("local", kind="stub")
    echo = factories.make_model(local, "echo")
    governed = factories.make_route("governed", echo)
    factories.make_route("free", echo)
    issued = factories.make_key(tenant)
    RateLimit.objects.create(scope="key", api_key=issued.api_key, rpm=10_000, tpm=10_000_000)
    RateLimit.objects.create(scope="tenant", tenant=tenant, rpm=10_000)
    Budget.objects.create(scope="route", route=governed, period="monthly", max_cost_usd=Decimal(9))
    Budget.objects.create(scope="tenant", tenant=tenant, period="daily", max_tokens=10**9)
    unlimited = factories.make_key(factories.make_tenant("unlimited"))
    return {"governed": issued.plaintext, "unlimited": unlimited.plaintext}


async def ask(key: str, route: str, stream: bool = False) -> None:
    response = await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps({"model": route, "messages": USER, "stream": stream}),
        content_type="application/json",
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.content
    if stream:
        _ = [part async for part in response.streaming_content]


async def test_a_governed_request_costs_two_redis_round_trips_and_no_query(world):
    await governor.reset_for_tests()
    key = world["governed"]
    for stream in (False, True):  # warm: snapshot, budget counters, circuit states
        await ask(key, "governed", stream)
    with count_queries_everywhere() as queries, count_redis_round_trips() as sent:
        for _ in range(3):
            await ask(key, "governed")
            await ask(key, "governed", stream=True)
    assert queries.queries == []
    # Per request: one admission script (2 rate limits + 2 budgets at once), one settlement.
    assert sent == ["EVALSHA", "EVALSHA"] * 6


async def test_an_ungoverned_request_touches_neither_redis_nor_the_database(world):
    key = world["unlimited"]
    await ask(key, "free")
    with count_queries_everywhere() as queries, count_redis_round_trips() as sent:
        for _ in range(3):
            await ask(key, "free")
            await ask(key, "free", stream=True)
    assert queries.queries == []
    assert sent == []


async def serve(key: str, route: str, *, stream: bool, events: list[str]) -> None:
    """One request through the production ASGI entry point (the one uvicorn runs), noting
    what goes out to the client in `events`."""
    from gateway_project.asgi import application

    body = orjson.dumps({"model": route, "messages": USER, "stream": stream})
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/chat/completions",
        "raw_path": b"/v1/chat/completions",
        "root_path": "",
        "query_string": b"",
        "server": ("testserver", 80),
        "client": ("127.0.0.1", 50000),
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {key}".encode()),
        ],
    }
    received = False

    async def receive() -> dict:
        nonlocal received
        if not received:
            received = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # the client stays connected
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            assert message["status"] == 200
            events.append("response starts")
        elif not message.get("more_body"):
            events.append("response ends")

    await application(scope, receive, send)
    events.append("handler returns")


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
async def test_the_settlement_waits_until_the_answer_has_been_sent(world, stream):
    """The client gets its answer without waiting for the settlement's round trip, and the
    server still counts the request in flight until it is settled."""
    await governor.reset_for_tests()
    key = world["governed"]
    await ask(key, "governed", stream)  # warm
    events: list[str] = []
    with count_redis_round_trips() as sent:
        original = governor.settle

        async def settle(*args, **kwargs):  # type: ignore[no-untyped-def]
            events.append("settled")
            return await original(*args, **kwargs)

        governor.settle = settle  # type: ignore[method-assign]
        try:
            await serve(key, "governed", stream=stream, events=events)
        finally:
            del governor.settle
    assert events == ["response starts", "response ends", "settled", "handler returns"]
    assert sent == ["EVALSHA", "EVALSHA"]
