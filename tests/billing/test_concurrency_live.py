"""Limits that hold across processes: two real gateway servers share Postgres and Redis,
and 200 concurrent requests race for a budget and an RPM limit."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal

import httpx
import pytest
import redis
from django.conf import settings
from django.db.models import Sum
from django.utils import timezone

from audit.models import AuditEvent
from billing.models import Budget, RateLimit
from billing.periods import period_for
from providers.tokens import count_prompt_tokens
from routing.models import Route
from tests import factories
from tests.fakes.server import Exchange, FakeServer
from tests.live import GatewayProcess, stop_quietly
from tests.personas import Persona, Personas

pytestmark = [
    pytest.mark.live,
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
def race(personas: Personas) -> Persona:
    """acme, and the global route `race`: a stub whose every answer costs the same."""
    slow = factories.make_provider("slow-stub", kind="stub", stub_delay_ms=20)
    echo = factories.make_model(slow, "echo", input_per_million="0", output_per_million="1000")
    route = factories.make_route("race", echo)
    Route.objects.filter(pk=route.pk).update(default_max_tokens=2)
    route.refresh_from_db()
    route.save()  # through the write path, so the servers' snapshots refresh
    return personas.acme


async def _fire(
    gateways: list[GatewayProcess], key: str, *, model: str = "race", messages: list = PROMPT
) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=REQUESTS)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        calls = [
            client.post(
                f"{gateways[i % 2].base_url}/v1/chat/completions",
                headers={"authorization": f"Bearer {key}"},
                json={"model": model, "messages": messages},
            )
            for i in range(REQUESTS)
        ]
        return await asyncio.gather(*calls)


def _wait_for_rows(count: int, timeout: float = 20.0, route: str = "race") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if AuditEvent.objects.filter(route=route).count() >= count:
            return
        time.sleep(0.1)
    raise AssertionError("audit rows did not all arrive")


def test_a_cost_budget_holds_across_two_processes(two_gateways, race):
    tenant = race.tenant
    per_request = Decimal(2) * Decimal(1000) / Decimal(1_000_000)  # 2 tokens at $1000/M
    budget_usd = Decimal("0.1")
    Budget.objects.create(scope="tenant", tenant=tenant, period="monthly", max_cost_usd=budget_usd)
    time.sleep(0.2)  # let both servers see the new configuration

    responses = asyncio.run(_fire(two_gateways, race.plaintext_key))

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


def test_an_rpm_limit_admits_exactly_its_count_across_two_processes(two_gateways, race):
    tenant = race.tenant
    RateLimit.objects.create(scope="tenant", tenant=tenant, rpm=100)
    time.sleep(0.2)

    responses = asyncio.run(_fire(two_gateways, race.plaintext_key))

    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 100
    assert statuses.count(429) == 100
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"]["type"] == "rate_limit_error"
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "100"
    ok = next(r for r in responses if r.status_code == 200)
    assert ok.headers["x-ratelimit-limit-requests"] == "100"


class OverBiller(FakeServer):
    """An OpenAI-compatible upstream whose tokenizer is not ours: it bills BILLED_PROMPT
    prompt tokens for a message we count as 8."""

    async def handle(self, ex: Exchange) -> None:
        await asyncio.sleep(0.02)  # long enough for the burst to overlap
        await ex.json(
            200,
            {
                "id": "chatcmpl-over",
                "object": "chat.completion",
                "created": 1,
                "model": "over",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": "ok"},
                        "finish_reason": "stop",
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": BILLED_PROMPT,
                    "completion_tokens": 1,
                    "total_tokens": BILLED_PROMPT + 1,
                },
            },
        )


BILLED_PROMPT = 12
SHORT = [{"role": "user", "content": "Hi"}]


@pytest.fixture
def over_biller():
    with OverBiller() as server:
        yield server


def test_a_hard_budget_holds_when_the_upstream_bills_more_prompt_tokens_than_we_count(
    two_gateways, over_biller, personas
):
    assert count_prompt_tokens(SHORT, "openai") == 8
    acme = personas.acme
    provider = factories.make_provider(
        "over", kind="openai", base_url=f"{over_biller.base_url}/v1", timeout_s=10
    )
    # The prompt is (nearly) all of the cost: $1,000 per million input tokens.
    model = factories.make_model(provider, "over", input_per_million="1000", output_per_million="1")
    route = factories.make_route("over", model)
    Route.objects.filter(pk=route.pk).update(default_max_tokens=1)
    route.refresh_from_db()
    route.save()
    cap = Decimal("1.15")
    budget = Budget.objects.create(
        scope="tenant", tenant=acme.tenant, period="monthly", max_cost_usd=cap
    )
    per_request = (Decimal(BILLED_PROMPT) * 1000 + Decimal(1)) / Decimal(1_000_000)
    time.sleep(0.2)

    def ask(gateway: GatewayProcess) -> httpx.Response:
        return httpx.post(
            f"{gateway.base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {acme.plaintext_key}"},
            json={"model": "over", "messages": SHORT},
            timeout=30,
        )

    # Each process sees the upstream's usage once, then the burst comes.
    assert [ask(g).status_code for g in two_gateways] == [200, 200]
    responses = asyncio.run(_fire(two_gateways, acme.plaintext_key, model="over", messages=SHORT))

    statuses = [r.status_code for r in responses]
    assert set(statuses) == {200, 429}, set(statuses)
    _wait_for_rows(REQUESTS + 2, route="over")
    spent = AuditEvent.objects.filter(route="over").aggregate(total=Sum("cost_usd"))["total"]
    assert spent == per_request * (statuses.count(200) + 2)
    # Not a request's cost more than the cap (before calibration: 18% over it).
    assert spent <= cap + per_request, (spent, cap)
    # The two first requests, reserved at our count times the margin (10 tokens), did
    # overrun; the budget's counters say so.
    counters = _budget_hash(budget)
    assert counters["ov"] == 2


def _budget_hash(budget: Budget) -> dict[str, int]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"gw:bud:{budget.id}:{period_for(budget.period, timezone.now()).key}"
    return {k.decode(): int(v) for k, v in client.hgetall(key).items()}
