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
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from billing.counters import governor
from billing.models import Budget, RateLimit
from gateway_project.lib.redis_pipe import PipelinedRedis
from tests import factories
from tests.conftest import count_queries_everywhere, forget_governance_counters
from tests.personas import Personas

pytestmark = pytest.mark.django_db(transaction=True)
USER = [{"role": "user", "content": "Hello there"}]


@contextmanager
def count_redis_round_trips() -> Iterator[list[str]]:
    """Every command any asyncio Redis client sends (a Lua script call is one): redis-py's
    (fakeredis without REDIS_URL) and the proxy path's pipelined connection."""
    sent: list[str] = []
    original_command = redis.asyncio.Redis.execute_command
    original_pipe = PipelinedRedis.execute

    async def execute_command(self, *args, **options):
        sent.append(str(args[0]))
        return await original_command(self, *args, **options)

    async def execute_on_pipe(self, *args):
        sent.append(str(args[0]))
        return await original_pipe(self, *args)

    redis.asyncio.Redis.execute_command = execute_command
    PipelinedRedis.execute = execute_on_pipe
    try:
        yield sent
    finally:
        redis.asyncio.Redis.execute_command = original_command
        PipelinedRedis.execute = original_pipe


@pytest.fixture
def governed(personas: Personas, settings) -> Personas:
    """acme governed on its private route: rate limits on its key and its tenant, budgets on
    the route and the tenant. globex, on the global route, is governed by nothing."""
    # Keep the periodic checks (config generation, circuit states) out of the window.
    settings.GATEWAY_SNAPSHOT_CHECK_SECONDS = 60
    settings.GATEWAY_CIRCUIT_CACHE_SECONDS = 60
    acme = personas.acme
    RateLimit.objects.create(scope="key", api_key=acme.key, rpm=10_000, tpm=10_000_000)
    RateLimit.objects.create(scope="tenant", tenant=acme.tenant, rpm=10_000)
    Budget.objects.create(
        scope="route", route=acme.route, period="monthly", max_cost_usd=Decimal(9)
    )
    Budget.objects.create(scope="tenant", tenant=acme.tenant, period="daily", max_tokens=10**9)
    return personas


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


async def test_a_governed_request_costs_two_redis_round_trips_and_no_query(governed):
    await forget_governance_counters()
    key, route = governed.acme.plaintext_key, governed.acme.route.name
    for stream in (False, True):  # warm: snapshot, budget counters, circuit states
        await ask(key, route, stream)
    with count_queries_everywhere() as queries, count_redis_round_trips() as sent:
        for _ in range(3):
            await ask(key, route)
            await ask(key, route, stream=True)
    assert queries.queries == []
    # Per request: one admission script (2 rate limits + 2 budgets at once), one settlement.
    assert sent == ["EVALSHA", "EVALSHA"] * 6


async def test_an_ungoverned_request_touches_neither_redis_nor_the_database(governed):
    key, route = governed.globex.plaintext_key, governed.route.name
    await ask(key, route)
    with count_queries_everywhere() as queries, count_redis_round_trips() as sent:
        for _ in range(3):
            await ask(key, route)
            await ask(key, route, stream=True)
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
async def test_the_settlement_waits_until_the_answer_has_been_sent(governed, stream):
    """The client gets its answer without waiting for the settlement's round trip, and the
    server still counts the request in flight until it is settled."""
    await forget_governance_counters()
    key, route = governed.acme.plaintext_key, governed.acme.route.name
    await ask(key, route, stream)  # warm
    events: list[str] = []
    with count_redis_round_trips() as sent:
        original = governor.settle

        async def settle(*args, **kwargs):
            events.append("settled")
            return await original(*args, **kwargs)

        governor.settle = settle
        try:
            await serve(key, route, stream=stream, events=events)
        finally:
            del governor.settle
    assert events == ["response starts", "response ends", "settled", "handler returns"]
    assert sent == ["EVALSHA", "EVALSHA"]


async def embed(key: str, route: str) -> None:
    response = await AsyncClient().post(
        "/v1/embeddings",
        data=orjson.dumps({"model": route, "input": ["Hello there", "General Kenobi"]}),
        content_type="application/json",
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.content


def make_embedding_route(personas: Personas) -> str:
    """acme's `acme-embed` (an embedding model on the stub), with a budget like its private
    route's: the key's and tenant's limits and the tenant's budget apply to it as well."""
    model = factories.make_model(personas.provider, "stub-embed")
    route = factories.make_route("acme-embed", model, tenant=personas.acme.tenant)
    Budget.objects.create(scope="route", route=route, period="monthly", max_cost_usd=Decimal(9))
    return route.name


async def test_a_governed_embeddings_request_costs_two_round_trips_and_no_query(governed):
    route = await sync_to_async(make_embedding_route)(governed)
    await forget_governance_counters()
    key = governed.acme.plaintext_key
    await embed(key, route)  # warm
    with count_queries_everywhere() as queries, count_redis_round_trips() as sent:
        for _ in range(3):
            await embed(key, route)
    assert queries.queries == []
    assert sent == ["EVALSHA", "EVALSHA"] * 3


async def ask_responses(key: str, route: str, stream: bool = False) -> None:
    response = await AsyncClient().post(
        "/v1/responses",
        data=orjson.dumps({"model": route, "input": "Hello there", "stream": stream}),
        content_type="application/json",
        headers={"authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.content
    if stream:
        _ = [part async for part in response.streaming_content]


async def test_a_governed_responses_request_costs_two_round_trips_and_no_query(governed):
    await forget_governance_counters()
    key, route = governed.acme.plaintext_key, governed.acme.route.name
    for stream in (False, True):  # warm
        await ask_responses(key, route, stream)
    with count_queries_everywhere() as queries, count_redis_round_trips() as sent:
        for _ in range(3):
            await ask_responses(key, route)
            await ask_responses(key, route, stream=True)
    assert queries.queries == []
    assert sent == ["EVALSHA", "EVALSHA"] * 6


async def ask_messages(key: str, route: str, stream: bool = False) -> None:
    response = await AsyncClient().post(
        "/v1/messages",
        data=orjson.dumps({"model": route, "max_tokens": 50, "messages": USER, "stream": stream}),
        content_type="application/json",
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 200, response.content
    if stream:
        _ = [part async for part in response.streaming_content]


async def test_a_governed_anthropic_message_costs_the_same_as_a_chat_completion(governed):
    await forget_governance_counters()
    key, route = governed.acme.plaintext_key, governed.acme.route.name
    for stream in (False, True):
        await ask_messages(key, route, stream)
    with count_queries_everywhere() as queries, count_redis_round_trips() as sent:
        for _ in range(3):
            await ask_messages(key, route)
            await ask_messages(key, route, stream=True)
    assert queries.queries == []
    assert sent == ["EVALSHA", "EVALSHA"] * 6


async def test_a_message_passed_through_to_anthropic_costs_the_same(governed, fake_anthropic):
    """An Anthropic target gets the client's body untranslated (anthropic_native.py), on
    the same zero-query path."""

    def claude_route() -> str:
        provider = factories.make_provider(
            "fake-anthropic", kind="anthropic", base_url=fake_anthropic.anthropic_base_url
        )
        model = factories.make_model(provider, "ok")
        return factories.make_route("claude", model, tenant=governed.acme.tenant).name

    route = await sync_to_async(claude_route)()
    await forget_governance_counters()
    key = governed.acme.plaintext_key
    for stream in (False, True):
        await ask_messages(key, route, stream)
    with count_queries_everywhere() as queries, count_redis_round_trips() as sent:
        for _ in range(3):
            await ask_messages(key, route)
            await ask_messages(key, route, stream=True)
    assert queries.queries == []
    assert sent == ["EVALSHA", "EVALSHA"] * 6
