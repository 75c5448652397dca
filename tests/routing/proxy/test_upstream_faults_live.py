"""Fault injection against a live gateway: scripted fake upstreams fail in every way we
know of, and for each we check what the client got, which upstream attempts were made,
the circuit state, the audit row, and that rate-limit and budget holds were released.

The gateway runs against a Redis server of this module's own, so the test can read the
circuit and budget state the server wrote.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from decimal import Decimal

import httpx
import openai
import orjson
import pytest
import redis

from audit.models import AuditEvent
from billing.models import Budget, RateLimit
from providers.models import Provider, ProviderModel
from routing.models import Route
from tests import factories
from tests.fakes.upstreams import refused_base_url
from tests.live import GatewayProcess, RedisServer, stop_quietly
from tests.personas import Persona, Personas

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server"),
]
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(scope="module")
def stack(django_db_setup, django_db_blocker):
    server = RedisServer().start()
    gateway = GatewayProcess(extra_env={"REDIS_URL": server.url}).start()
    yield server, gateway
    stop_quietly(gateway, django_db_blocker=django_db_blocker)
    server.stop()


@dataclass(frozen=True)
class Faults:
    """acme calling a gateway process that has a Redis of its own, and the providers the
    cases put first on a route (`faulty`, `refused`) before a healthy fallback."""

    acme: Persona
    gateway: GatewayProcess
    redis: redis.Redis  # the gateway's: circuit states and budget holds, as it wrote them
    faulty: Provider  # the fake OpenAI, opening its circuit on the first failure
    refused: Provider  # an address nobody listens on
    healthy: ProviderModel  # the fallback target of every route here


@pytest.fixture
def faults(personas: Personas, stack, fake_openai) -> Faults:
    server, gateway = stack
    client_redis = redis.Redis.from_url(server.url)
    client_redis.flushdb()
    time.sleep(0.6)  # the server's breaker trusts its local copy of circuit states this long
    # The faulty provider opens its circuit on the first failure, so each case shows it.
    faulty = factories.make_provider(
        "faulty",
        kind="openai",
        base_url=fake_openai.openai_base_url,
        timeout_s=3,
        connect_timeout_s=1,
        first_byte_timeout_s=1,
        stream_idle_timeout_s=1,
        max_retries=0,
        circuit_failure_threshold=1,
        circuit_cooldown_s=60,
    )
    refused = factories.make_provider(
        "refused",
        kind="openai",
        base_url=refused_base_url(),
        connect_timeout_s=1,
        max_retries=0,
        circuit_failure_threshold=1,
    )
    healthy = factories.make_provider(
        "healthy", kind="openai", base_url=fake_openai.openai_base_url, max_retries=0
    )
    RateLimit.objects.create(scope="key", api_key=personas.acme.key, rpm=1000, tpm=10_000_000)
    announce(client_redis)
    return Faults(
        acme=personas.acme,
        gateway=gateway,
        redis=client_redis,
        faulty=faulty,
        refused=refused,
        healthy=factories.make_model(healthy, "ok"),
    )


def announce(client: redis.Redis) -> None:
    """The server watches its own Redis for config changes; this test process writes to
    the database without it, so it announces its changes there itself."""
    client.set("gw:config:generation", time.time_ns())  # new after a FLUSHDB too


def route_with(faults: Faults, provider: Provider, model: str) -> Route:
    route = factories.make_route(
        "fragile", factories.make_model(provider, model), faults.healthy, tenant=faults.acme.tenant
    )
    Budget.objects.create(scope="route", route=route, period="daily", max_cost_usd=Decimal(100))
    announce(faults.redis)
    return route


def audit_row(request_id: str) -> AuditEvent:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        row = AuditEvent.objects.filter(request_id=request_id).first()
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError(f"no audit row for {request_id}")


def assert_holds_released(faults: Faults) -> None:
    r = faults.redis
    deadline = time.monotonic() + 5
    while r.zcard("gw:resv:expiry") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert r.zcard("gw:resv:expiry") == 0, "a budget reservation was left behind"
    for key in r.scan_iter(match="gw:bud:*"):
        assert int(r.hget(key, "rt") or 0) == 0 and int(r.hget(key, "rc") or 0) == 0


def circuit_is_open(faults: Faults, provider: str, model: str) -> bool:
    """Read the breaker's hash as the server wrote it ("s" = "o" while open)."""
    return faults.redis.hget(f"gw:cb:{provider}/{model}", "s") == b"o"


def post(faults: Faults, *, stream: bool, timeout: float = 15) -> httpx.Response:
    return httpx.post(
        f"{faults.gateway.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {faults.acme.plaintext_key}"},
        json={"model": "fragile", "messages": HELLO, "stream": stream},
        timeout=timeout,
    )


def events(response: httpx.Response) -> list[str]:
    return [line[6:] for line in response.text.split("\n\n") if line.startswith("data: ")]


def streamed_text(response: httpx.Response) -> str:
    chunks = [orjson.loads(event) for event in events(response) if event.startswith("{")]
    return "".join(
        choice["delta"].get("content") or "" for chunk in chunks for choice in chunk["choices"]
    )


# Failures before the first byte: the client never sees them; the next target answers.
BEFORE_FIRST_BYTE = [
    ("refused", "ok", False, "connect_error"),
    ("faulty", "stall", False, "timeout"),
    ("faulty", "stall", True, "timeout"),
    ("faulty", "fail-429", False, "rate_limited"),
    ("faulty", "fail-500", False, "server_error"),
    ("faulty", "fail-502", True, "server_error"),
    ("faulty", "fail-503", False, "server_error"),
    ("faulty", "fail-529", True, "server_error"),
    ("faulty", "malformed-json", False, "bad_response"),
    ("faulty", "malformed-sse", True, "bad_response"),
    ("faulty", "error-at-start", True, None),
]


@pytest.mark.parametrize(("provider", "model", "stream", "kind"), BEFORE_FIRST_BYTE)
def test_a_failure_before_the_first_byte_falls_back_invisibly(
    faults, provider, model, stream, kind
):
    route_with(faults, getattr(faults, provider), model)
    response = post(faults, stream=stream)

    assert response.status_code == 200
    if stream:
        assert events(response)[-1] == "[DONE]"
        assert streamed_text(response).startswith("fake-openai says")
    else:
        assert response.json()["choices"][0]["message"]["content"].startswith("fake-openai")
    row = audit_row(response.headers["x-request-id"])
    assert (row.outcome, row.attempts, row.fallback_used, row.provider) == (
        "success",
        2,
        True,
        "healthy",
    )
    first = row.attempt_log[0]
    assert (first["provider"], first["ok"]) == (provider, False)
    if kind is not None:
        assert first["kind"] == kind
    # Threshold 1: that one failure opened the target's circuit in Redis.
    assert circuit_is_open(faults, provider, "ok" if provider == "refused" else model)
    assert_holds_released(faults)


# Failures after the first byte: the client gets an error event, never a silent cut.
AFTER_FIRST_BYTE = [
    ("stall-midstream", "timeout"),
    ("midstream-drop", None),
    ("error-after-200", "upstream_error_event"),
    ("truncated", "truncated"),
]


@pytest.mark.parametrize(("model", "kind"), AFTER_FIRST_BYTE)
def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error_event(faults, model, kind):
    route_with(faults, faults.faulty, model)
    response = post(faults, stream=True)

    assert response.status_code == 200
    sent = events(response)
    assert sent and sent[-1] != "[DONE]"
    assert '"error"' in sent[-1]
    row = audit_row(response.headers["x-request-id"])
    assert (row.outcome, row.status_code, row.attempts, row.provider) == (
        "upstream_error",
        502,
        1,
        "faulty",
    )
    if kind is not None:
        assert row.error_type == kind
    assert circuit_is_open(faults, "faulty", model)
    assert_holds_released(faults)


def test_a_slow_trickle_within_the_idle_timeout_is_delivered_whole(faults):
    route_with(faults, faults.faulty, "trickle")
    started = time.monotonic()
    response = post(faults, stream=True)
    assert events(response)[-1] == "[DONE]"
    assert time.monotonic() - started > 1.0  # it really trickled, longer than the idle limit
    row = audit_row(response.headers["x-request-id"])
    assert (row.outcome, row.provider) == ("success", "faulty")
    assert_holds_released(faults)


def test_an_open_circuit_is_skipped_without_waiting(faults):
    route_with(faults, faults.faulty, "stall")
    first = post(faults, stream=False)  # the stall opens the circuit (threshold 1)
    assert first.status_code == 200
    time.sleep(0.6)  # past the breaker's local cache interval
    started = time.monotonic()
    second = post(faults, stream=False)
    assert time.monotonic() - started < 0.8  # no first-byte timeout paid again
    row = audit_row(second.headers["x-request-id"])
    # The open target went to the back of the line; the healthy one answered first.
    assert [(a["provider"], a["ok"]) for a in row.attempt_log] == [("healthy", True)]
    assert (row.attempts, row.provider) == (1, "healthy")


def test_a_client_leaving_before_the_first_byte_is_audited_and_released(faults):
    route_with(faults, faults.faulty, "stall")
    with pytest.raises(httpx.ReadTimeout):
        post(faults, stream=False, timeout=0.4)
    deadline = time.monotonic() + 5
    while not (rows := list(AuditEvent.objects.filter(route="fragile"))):
        assert time.monotonic() < deadline
        time.sleep(0.05)
    [row] = rows
    assert (row.outcome, row.status_code) == ("cancelled", 499)
    assert_holds_released(faults)


def test_a_client_leaving_mid_stream_is_audited_and_released(faults):
    route_with(faults, faults.faulty, "stall-midstream")
    with httpx.stream(
        "POST",
        f"{faults.gateway.base_url}/v1/chat/completions",
        headers={"authorization": f"Bearer {faults.acme.plaintext_key}"},
        json={"model": "fragile", "messages": HELLO, "stream": True},
        timeout=10,
    ) as response:
        request_id = response.headers["x-request-id"]
        for line in response.iter_lines():
            if line.startswith("data: {"):
                break
    row = audit_row(request_id)
    assert row.outcome == "cancelled"
    assert_holds_released(faults)


def test_the_sdk_raises_on_an_error_event(faults):
    route_with(faults, faults.faulty, "error-after-200")
    client = openai.OpenAI(
        base_url=f"{faults.gateway.base_url}/v1", api_key=faults.acme.plaintext_key, max_retries=0
    )
    with client.chat.completions.with_streaming_response.create(
        model="fragile", messages=HELLO, stream=True
    ) as raw:
        request_id = raw.headers["x-request-id"]
        with pytest.raises(openai.APIError):
            for _ in raw.parse():
                pass
    assert audit_row(request_id).outcome == "upstream_error"
