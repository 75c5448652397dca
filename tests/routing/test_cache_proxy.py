"""The response cache through the proxy: HIT/MISS headers, bypass, tenant isolation, TTL,
and how a hit is audited and counted."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from audit.models import AuditEvent
from audit.writer import audit_writer
from billing.governance import governor
from billing.models import RateLimit
from routing import cache as response_cache
from routing.models import Route
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)
USER = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(autouse=True)
async def _clean_cache():
    await response_cache.clear()
    await governor.reset_for_tests()
    yield
    await response_cache.clear()


@pytest.fixture
def world(transactional_db):
    acme = factories.make_tenant("acme")
    globex = factories.make_tenant("globex")
    local = factories.make_provider("local", kind="stub")
    echo = factories.make_model(local, "echo", input_per_million="1", output_per_million="2")
    route = factories.make_route("cached", echo)
    Route.objects.filter(pk=route.pk).update(cache_ttl_seconds=60)
    Route.objects.get(pk=route.pk).save()
    return {
        "acme": acme,
        "acme_key": factories.make_key(acme).plaintext,
        "globex_key": factories.make_key(globex).plaintext,
        "route": route,
    }


async def ask(key: str, body: dict | None = None, **headers: str):
    payload = {"model": "cached", "messages": USER, **(body or {})}
    return await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps(payload),
        content_type="application/json",
        headers={"authorization": f"Bearer {key}", **headers},
    )


async def rows() -> list[AuditEvent]:
    await sync_to_async(audit_writer.flush)()
    return await sync_to_async(lambda: list(AuditEvent.objects.order_by("created_at")))()


async def settle_background() -> None:
    await asyncio.sleep(0.05)  # the store runs after the response


async def test_the_second_identical_request_is_a_hit_with_zero_upstream_cost(world):
    first = await ask(world["acme_key"])
    assert first["x-cache"] == "MISS"
    await settle_background()
    second = await ask(world["acme_key"])
    assert second["x-cache"] == "HIT"
    assert orjson.loads(second.content)["choices"] == orjson.loads(first.content)["choices"]
    miss, hit = await rows()
    assert (miss.metadata["cache"], miss.provider) == ("miss", "local")
    assert miss.cost_usd > 0
    assert (hit.metadata["cache"], hit.provider, hit.cost_usd) == ("exact", "", 0)
    assert hit.outcome == "success" and hit.total_tokens == miss.total_tokens


async def test_a_cached_answer_is_replayed_as_a_stream(world):
    await ask(world["acme_key"])
    await settle_background()
    response = await ask(
        world["acme_key"], {"stream": True, "stream_options": {"include_usage": True}}
    )
    assert response["x-cache"] == "HIT"
    raw = b"".join([part async for part in response.streaming_content])
    events = [line[6:] for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["usage"]["total_tokens"] > 0


async def test_the_cache_can_be_bypassed_per_request(world):
    await ask(world["acme_key"])
    await settle_background()
    bypassed = await ask(world["acme_key"], {"x-gateway": {"cache": False}})
    assert "x-cache" not in bypassed
    header_bypass = await ask(world["acme_key"], **{"x-gateway-cache": "bypass"})
    assert "x-cache" not in header_bypass
    assert [row.provider for row in await rows()] == ["local", "local", "local"]


async def test_a_tenant_never_gets_another_tenants_cached_answer(world):
    await ask(world["acme_key"])
    await settle_background()
    other = await ask(world["globex_key"])
    assert other["x-cache"] == "MISS"


async def test_a_different_request_is_a_miss(world):
    await ask(world["acme_key"])
    await settle_background()
    assert (await ask(world["acme_key"], {"temperature": 0.1}))["x-cache"] == "MISS"


async def test_an_entry_expires_with_the_routes_ttl(world):
    await sync_to_async(
        lambda: Route.objects.filter(pk=world["route"].pk).update(cache_ttl_seconds=1)
    )()
    await sync_to_async(lambda: Route.objects.get(pk=world["route"].pk).save())()
    await ask(world["acme_key"])
    await settle_background()
    assert (await ask(world["acme_key"]))["x-cache"] == "HIT"
    await asyncio.sleep(1.2)
    assert (await ask(world["acme_key"]))["x-cache"] == "MISS"


async def test_a_hit_still_counts_against_the_rate_limit(world):
    await sync_to_async(RateLimit.objects.create)(scope="tenant", tenant=world["acme"], rpm=2)
    await ask(world["acme_key"])
    await settle_background()
    assert (await ask(world["acme_key"]))["x-cache"] == "HIT"
    refused = await ask(world["acme_key"])
    assert refused.status_code == 429
