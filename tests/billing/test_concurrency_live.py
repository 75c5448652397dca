"""Limits that hold across processes: two real gateway servers share Postgres and Redis,
and 200 concurrent requests race for a budget and an RPM limit."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx
import pytest
from django.conf import settings
from django.db.models import Sum

from audit.models import AuditEvent
from billing.models import Budget, RateLimit
from routing.models import Route
from tests import factories
from tests.live import GatewayProcess, stop_quietly

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not settings.REDIS_URL, reason="needs a shared Redis (REDIS_URL)"),
]

REQUESTS = 200
# Long enough that the stub always stops at the route's output cap of 2 tokens, so every
# request costs exactly its reserved worst case.
PROMPT = [{"role": "user", "content": "tell me a long story about " + "dragons " * 20}]


@pytest.fixture(scope="module")
def two_gateways(django_db_setup, django_db_blocker):
    processes = [GatewayProcess().start(), GatewayProcess().start()]
    yield processes
    stop_quietly(*processes, django_db_blocker=django_db_blocker)


@pytest.fixture
def tenant_and_key(transactional_db):
    tenant = factories.make_tenant("racer")
    local = factories.make_provider("local", kind="stub", stub_delay_ms=20)
    echo = factories.make_model(local, "echo", input_per_million="0", output_per_million="1000")
    route = factories.make_route("race", echo)
    Route.objects.filter(pk=route.pk).update(default_max_tokens=2)
    route.refresh_from_db()
    route.save()  # through the write path, so the servers' snapshots refresh
    return tenant, route, factories.make_key(tenant)


async def _fire(gateways: list[GatewayProcess], key: str) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=REQUESTS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        calls = [
            client.post(
                f"{gateways[i % 2].base_url}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": "race", "messages": PROMPT},
            )
            for i in range(REQUESTS)
        ]
        return await asyncio.gather(*calls)


def _wait_for_rows(count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if AuditEvent.objects.filter(route="race").count() >= count:
            return
        time.sleep(0.1)
    raise AssertionError("audit rows did not all arrive")


def test_a_cost_budget_holds_across_two_processes(two_gateways, tenant_and_key):
    tenant, _route, issued = tenant_and_key
    per_request = Decimal(2) * Decimal(1000) / Decimal(1_000_000)  # 2 tokens at $1000/M
    budget_usd = Decimal("0.1")
    Budget.objects.create(scope="tenant", tenant=tenant, period="monthly", max_cost_usd=budget_usd)
    time.sleep(0.2)  # let both servers see the new configuration

    responses = asyncio.run(_fire(two_gateways, issued.plaintext))

    statuses = [r.status_code for r in responses]
    admitted = statuses.count(200)
    refused = [r for r in responses if r.status_code == 429]
    assert admitted + len(refused) == REQUESTS, set(statuses)
    allowed = int(budget_usd / per_request)  # 50
    assert allowed - 1 <= admitted <= allowed
    assert all(r.json()["error"]["code"] == "insufficient_quota" for r in refused)
    assert all(r.headers["x-should-retry"] == "false" for r in refused)
    # Both processes served some of them.
    served_by = {r.url.port for r in responses if r.status_code == 200}
    assert served_by == {g.port for g in two_gateways}

    _wait_for_rows(REQUESTS)
    spent = AuditEvent.objects.filter(route="race", outcome="success").aggregate(
        total=Sum("cost_usd")
    )["total"]
    assert spent <= budget_usd
    assert spent == per_request * admitted
    assert AuditEvent.objects.filter(route="race", status_code=429).count() == len(refused)


def test_an_rpm_limit_admits_exactly_its_count_across_two_processes(two_gateways, tenant_and_key):
    tenant, _route, issued = tenant_and_key
    RateLimit.objects.create(scope="tenant", tenant=tenant, rpm=100)
    time.sleep(0.2)

    responses = asyncio.run(_fire(two_gateways, issued.plaintext))

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 100
    assert statuses.count(429) == 100
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "100"
    ok = next(r for r in responses if r.status_code == 200)
    assert ok.headers["x-ratelimit-limit-requests"] == "100"
