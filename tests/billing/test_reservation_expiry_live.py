"""A gateway killed with requests in flight: their budget reservations stop counting once
those requests' own deadline (plus the margin) has passed, not a quarter of an hour later.

Two real gateway processes share a Redis server that this test starts (so it never
touches the shared one) and the test database; one is SIGKILLed mid-request, the other
keeps serving the same tenant.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from decimal import Decimal

import httpx
import pytest
import redis

from billing.models import Budget
from tests import factories
from tests.live import GatewayProcess, RedisServer
from tests.personas import Personas

pytestmark = [
    pytest.mark.live,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]
IN_FLIGHT = 10
TIMEOUT_S = 3  # the provider's total timeout: the longest a request there can run
MARGIN_S = 1
HELLO = [{"role": "user", "content": "hello"}]


@pytest.fixture
def redis_server():
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def tenant_key(personas: Personas, fake_openai) -> str:
    """acme's key, under a budget that IN_FLIGHT requests to the route `slow` hold whole."""
    tenant = personas.acme.tenant
    provider = factories.make_provider(
        "fake",
        kind="openai",
        base_url=fake_openai.openai_base_url,
        timeout_s=TIMEOUT_S,
        connect_timeout_s=1,
        max_retries=0,
    )
    # Only output is priced: each request reserves max_tokens=100 at $1,000 per million,
    # $0.1, so IN_FLIGHT of them hold the budget but for less than one more request (the
    # warm-up's $0.007 is spent from the extra $0.05).
    prices = {"input_per_million": "0", "output_per_million": "1000"}
    factories.make_route("slow", factories.make_model(provider, "stall", **prices))
    factories.make_route("quick", factories.make_model(provider, "ok", **prices))
    Budget.objects.create(
        scope="tenant",
        tenant=tenant,
        period="total",
        max_cost_usd=Decimal("0.1") * IN_FLIGHT + Decimal("0.05"),
    )
    return personas.acme.plaintext_key


def ask(gateway: GatewayProcess, key: str, route: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {key}"},
        json={"model": route, "messages": HELLO, "max_tokens": 100},
        timeout=30,
    )


def test_a_killed_gateways_reservations_expire_with_their_requests_deadline(
    tenant_key, redis_server
):
    env = {
        "REDIS_URL": redis_server.url,
        "GATEWAY_RESERVATION_MARGIN_SECONDS": str(MARGIN_S),
    }
    victim = GatewayProcess(extra_env=env).start()
    survivor = GatewayProcess(extra_env=env).start()
    client = redis.Redis.from_url(redis_server.url)
    try:
        assert ask(survivor, tenant_key, "quick").status_code == 200  # warm, and settled
        client.delete("gw:resv:expiry")  # (nothing in flight; only the requests below)

        def doomed() -> None:
            with contextlib.suppress(httpx.HTTPError):  # its server is killed under it
                ask(victim, tenant_key, "slow")

        threads = [threading.Thread(target=doomed, daemon=True) for _ in range(IN_FLIGHT)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + TIMEOUT_S - 1
        while client.zcard("gw:resv:expiry") < IN_FLIGHT and time.monotonic() < deadline:
            time.sleep(0.01)
        assert client.zcard("gw:resv:expiry") == IN_FLIGHT, victim.log()
        admitted_at = time.monotonic()
        victim.process.kill()  # SIGKILL: nothing is settled
        victim.process.wait()

        # While their requests could still be running, their reservations hold the budget.
        held = ask(survivor, tenant_key, "quick")
        assert time.monotonic() - admitted_at < TIMEOUT_S  # (still within their deadline)
        assert held.status_code == 429, held.text
        assert held.json()["error"]["code"] == "insufficient_quota"

        # Past their deadline and the margin they are released: 900 s before this fix.
        time.sleep(max(0.0, admitted_at + TIMEOUT_S + MARGIN_S + 0.5 - time.monotonic()))
        freed = ask(survivor, tenant_key, "quick")
        assert freed.status_code == 200, freed.text
        # The freed request settles its own reservation just after its answer is sent.
        settle_by = time.monotonic() + 5
        while client.zcard("gw:resv:expiry") and time.monotonic() < settle_by:
            time.sleep(0.01)
        assert client.zcard("gw:resv:expiry") == 0
        for thread in threads:
            thread.join(timeout=5)
    finally:
        victim.stop()
        survivor.stop()
