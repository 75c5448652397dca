"""Redis going away and coming back, and a client leaving mid-stream, against a real
gateway process and a real Redis server that the test starts and kills."""

from __future__ import annotations

import shutil
import time
from decimal import Decimal

import httpx
import pytest
import redis

from audit.models import AuditEvent
from billing.models import Budget, RateLimit
from tests import factories
from tests.live import GatewayProcess, RedisServer
from tests.personas import Personas

pytestmark = [
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]
HELLO = [{"role": "user", "content": "hello there, how are you today?"}]


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def key(personas: Personas) -> str:
    """acme's key, rate limited; the route `budgeted` has a budget, `limited` has none."""
    slow = factories.make_provider("slow-stub", kind="stub", stub_delay_ms=100)
    echo = factories.make_model(slow, "echo", input_per_million="1", output_per_million="2")
    budgeted = factories.make_route("budgeted", echo)
    factories.make_route("limited", echo)
    Budget.objects.create(scope="route", route=budgeted, period="daily", max_cost_usd=Decimal(5))
    RateLimit.objects.create(scope="key", api_key=personas.acme.key, rpm=1000)
    return personas.acme.plaintext_key


def ask(gateway: GatewayProcess, key: str, route: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": route, "messages": HELLO},
        timeout=30,
    )


def test_redis_down_fails_budgets_closed_and_rate_limits_open_then_recovers(key, redis_server):
    gateway = GatewayProcess(extra_env={"REDIS_URL": redis_server.url}).start()
    try:
        assert ask(gateway, key, "budgeted").status_code == 200
        assert ask(gateway, key, "limited").status_code == 200

        redis_server.stop()
        closed = ask(gateway, key, "budgeted")
        assert closed.status_code == 503
        assert closed.json()["error"]["code"] == "governance_unavailable"
        opened = ask(gateway, key, "limited")  # only a rate limit: fail open
        assert opened.status_code == 200

        redis_server.start()  # same port, empty: counters are rebuilt from the ledger
        deadline = time.monotonic() + 10
        while (response := ask(gateway, key, "budgeted")).status_code != 200:
            assert time.monotonic() < deadline, response.text
            time.sleep(0.2)
        client = redis.Redis.from_url(redis_server.url)
        [counter] = list(client.scan_iter(match="gw:bud:*"))
        spent = int(client.hget(counter, "sc"))
        # The ledger held the first successful budgeted request; the new one is added.
        assert spent > 0
        rows = AuditEvent.objects.filter(route="budgeted").values_list("outcome", "status_code")
        assert ("rejected", 503) in list(rows)
    finally:
        gateway.stop()


def test_a_client_leaving_mid_stream_settles_what_was_consumed(key, redis_server):
    gateway = GatewayProcess(extra_env={"REDIS_URL": redis_server.url}).start()
    try:
        long_prompt = [{"role": "user", "content": " ".join(f"word{i}" for i in range(12))}]
        with httpx.stream(
            "POST",
            f"{gateway.base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {key}"},
            json={"model": "budgeted", "messages": long_prompt, "stream": True},
            timeout=30,
        ) as response:
            request_id = response.headers["x-request-id"]
            for line in response.iter_lines():
                if line.startswith("data: {"):
                    break  # one chunk, then hang up
        deadline = time.monotonic() + 10
        while not (row := AuditEvent.objects.filter(request_id=request_id).first()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert row.outcome == "cancelled"
        assert row.prompt_tokens > 0
        client = redis.Redis.from_url(redis_server.url)
        [counter] = list(client.scan_iter(match="gw:bud:*"))
        deadline = time.monotonic() + 5
        while int(client.hget(counter, "rt") or 0) != 0:
            assert time.monotonic() < deadline, "the reservation was never released"
            time.sleep(0.05)
        assert int(client.hget(counter, "st")) == row.total_tokens
        assert Decimal(int(client.hget(counter, "sc"))) / 10**10 == row.cost_usd
        assert client.zcard("gw:resv:expiry") == 0
    finally:
        gateway.stop()
