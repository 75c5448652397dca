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
from billing.models import RateLimit
from routing import cache as response_cache
from routing.models import Route
from tests import factories
from tests.conftest import forget_governance_counters
from tests.personas import Personas

pytestmark = pytest.mark.django_db(transaction=True)
USER = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(autouse=True)
async def _clean_cache():
    await response_cache.clear()
    await forget_governance_counters()
    yield
    await response_cache.clear()


@pytest.fixture
def cached(personas: Personas) -> Route:
    """`cached`: a global route to the stub's echo that keeps answers for a minute."""
    route = factories.make_route("cached", personas.model)
    route.cache_ttl_seconds = 60
    route.save()  # through post_save: the snapshot sees it
    return route


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


async def test_the_second_identical_request_is_a_hit_with_zero_upstream_cost(personas, cached):
    first = await ask(personas.acme.plaintext_key)
    assert first["x-cache"] == "MISS"
    await settle_background()
    second = await ask(personas.acme.plaintext_key)
    assert second["x-cache"] == "HIT"
    assert orjson.loads(second.content)["choices"] == orjson.loads(first.content)["choices"]
    miss, hit = await rows()
    assert (miss.metadata["cache"], miss.provider) == ("miss", "local")
    assert miss.cost_usd > 0
    assert (hit.metadata["cache"], hit.provider, hit.cost_usd) == ("exact", "", 0)
    assert hit.outcome == "success" and hit.total_tokens == miss.total_tokens


async def test_a_cached_answer_is_replayed_as_a_stream(personas, cached):
    await ask(personas.acme.plaintext_key)
    await settle_background()
    response = await ask(
        personas.acme.plaintext_key, {"stream": True, "stream_options": {"include_usage": True}}
    )
    assert response["x-cache"] == "HIT"
    raw = b"".join([part async for part in response.streaming_content])
    events = [line[6:] for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["usage"]["total_tokens"] > 0


async def test_the_cache_can_be_bypassed_per_request(personas, cached):
    await ask(personas.acme.plaintext_key)
    await settle_background()
    bypassed = await ask(personas.acme.plaintext_key, {"x-gateway": {"cache": False}})
    assert "x-cache" not in bypassed
    header_bypass = await ask(personas.acme.plaintext_key, **{"x-gateway-cache": "bypass"})
    assert "x-cache" not in header_bypass
    assert [row.provider for row in await rows()] == ["local", "local", "local"]


async def test_a_tenant_never_gets_another_tenants_cached_answer(personas, cached):
    await ask(personas.acme.plaintext_key)
    await settle_background()
    other = await ask(personas.globex.plaintext_key)
    assert other["x-cache"] == "MISS"


async def test_a_different_request_is_a_miss(personas, cached):
    await ask(personas.acme.plaintext_key)
    await settle_background()
    assert (await ask(personas.acme.plaintext_key, {"temperature": 0.1}))["x-cache"] == "MISS"


async def test_an_entry_expires_with_the_routes_ttl(personas, cached):
    await sync_to_async(lambda: Route.objects.filter(pk=cached.pk).update(cache_ttl_seconds=1))()
    await sync_to_async(lambda: Route.objects.get(pk=cached.pk).save())()
    await ask(personas.acme.plaintext_key)
    await settle_background()
    assert (await ask(personas.acme.plaintext_key))["x-cache"] == "HIT"
    await asyncio.sleep(1.2)
    assert (await ask(personas.acme.plaintext_key))["x-cache"] == "MISS"


async def test_a_hit_still_counts_against_the_rate_limit(personas, cached):
    await sync_to_async(RateLimit.objects.create)(
        scope="tenant", tenant=personas.acme.tenant, rpm=2
    )
    await ask(personas.acme.plaintext_key)
    await settle_background()
    assert (await ask(personas.acme.plaintext_key))["x-cache"] == "HIT"
    refused = await ask(personas.acme.plaintext_key)
    assert refused.status_code == 429
