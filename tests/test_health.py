"""Liveness, readiness and the provider circuit report (ASGI handler, real database).

The status of /health and /ready is public; /ready's checks and /health/providers are for a
staff session or the metrics token (`operator` below sends the token)."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from django.contrib.auth import get_user_model
from django.test import AsyncClient

from providers.base import Target
from providers.circuit import breaker
from tests import factories

pytestmark = pytest.mark.django_db(transaction=True)


METRICS_TOKEN = "metrics-token-for-tests"
OPERATOR = {"Authorization": f"Bearer {METRICS_TOKEN}"}


@pytest.fixture(autouse=True)
def _fresh(fresh_circuits: None, settings) -> None:
    """Every test starts with every circuit closed (tests/conftest.py) and a metrics token."""
    settings.GATEWAY_METRICS_TOKEN = METRICS_TOKEN


async def open_circuit(provider: str, model: str) -> None:
    target = Target(
        provider_id=0,
        provider_name=provider,
        kind="openai",
        base_url="",
        api_key_env="",
        model=model,
        input_per_million=Decimal(0),
        output_per_million=Decimal(0),
        circuit_failure_threshold=1,
    )
    await breaker.record(target, ok=False, kind="connect_error")


async def get(path: str, headers: dict[str, str] | None = None, client: AsyncClient | None = None):
    """GET `path` as an operator (the metrics token) unless other headers or a client say."""
    client = client or AsyncClient()
    response = await client.get(path, headers=OPERATOR if headers is None else headers)
    return response, orjson.loads(response.content)


@pytest.fixture
def catalog(transactional_db):
    """An enabled stub (`local/echo`), an enabled real one with two models, a disabled one."""
    local = factories.make_provider("local", kind="stub")
    factories.make_model(local, "echo")
    openai = factories.make_provider("openai", kind="openai", base_url="https://api.openai.com")
    factories.make_model(openai, "gpt-4o")
    factories.make_model(openai, "gpt-4o-mini")
    old = factories.make_provider("old", kind="openai", base_url="https://old.invalid")
    old.enabled = False
    old.save()
    factories.make_model(old, "legacy")


async def test_liveness_answers(transactional_db):
    response, body = await get("/health")
    assert (response.status_code, body) == (200, {"status": "ok"})


async def test_it_lists_every_provider_target_with_its_circuit(catalog):
    await open_circuit("openai", "gpt-4o")

    response, body = await get("/health/providers")

    assert response.status_code == 200
    assert [(t["key"], t["kind"], t["enabled"]) for t in body] == [
        ("local/echo", "stub", True),
        ("old/legacy", "openai", False),
        ("openai/gpt-4o", "openai", True),
        ("openai/gpt-4o-mini", "openai", True),
    ]
    circuits = {t["key"]: t["circuit"] for t in body}
    assert circuits["openai/gpt-4o"]["state"] == "open"
    assert circuits["openai/gpt-4o"]["consecutive_failures"] == 1
    assert circuits["openai/gpt-4o"]["next_probe_at"]
    assert circuits["openai/gpt-4o-mini"] == {
        "key": "openai/gpt-4o-mini",
        "state": "closed",
        "consecutive_failures": 0,
        "window_failures": 0,
        "window_attempts": 0,
        "opened_at": None,
        "next_probe_at": None,
        "probe_in_flight": False,
    }


@pytest.fixture
def stub_only(transactional_db):
    factories.make_model(factories.make_provider("local", kind="stub"), "echo")


async def test_it_is_ready_with_an_enabled_stub_target(stub_only):
    response, body = await get("/ready")

    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert body["checks"]["database"] is True
    assert body["checks"]["providers"] is True
    assert body["usable_targets"] == 1


async def test_it_is_not_ready_without_any_provider(transactional_db):
    response, body = await get("/ready")
    assert response.status_code == 503
    assert body["checks"]["providers"] is False


async def test_it_is_not_ready_when_every_enabled_targets_circuit_is_open(catalog):
    for provider, model in [("local", "echo"), ("openai", "gpt-4o"), ("openai", "gpt-4o-mini")]:
        await open_circuit(provider, model)

    response, body = await get("/ready")

    assert response.status_code == 503
    assert body["checks"] == {"database": True, "providers": False} | (
        {"redis": True} if "redis" in body["checks"] else {}
    )
    assert body["usable_targets"] == 0  # the disabled provider's closed circuit does not count


async def test_one_target_with_a_closed_circuit_is_enough(catalog):
    await open_circuit("local", "echo")
    await open_circuit("openai", "gpt-4o")

    response, body = await get("/ready")

    assert response.status_code == 200
    assert body["usable_targets"] == 1


async def test_it_is_not_ready_when_the_configured_redis_is_unreachable(catalog, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"

    response, body = await get("/ready")

    assert response.status_code == 503
    assert body["checks"]["redis"] is False
    # The breaker lets every target through without Redis, so they all count.
    assert body["checks"]["providers"] is True
    assert body["usable_targets"] == 3

    response, body = await get("/health/providers")
    assert response.status_code == 200
    assert {t["circuit"] for t in body} == {None}


# --- who sees the details ------------------------------------------------------------------


async def test_anonymous_callers_get_only_the_readiness_status(stub_only):
    response, body = await get("/ready", headers={})

    assert response.status_code == 200
    assert body == {"status": "ok"}


async def test_anonymous_callers_still_see_a_503(transactional_db):
    response, body = await get("/ready", headers={})

    assert response.status_code == 503
    assert body == {"status": "unavailable"}


async def test_anonymous_callers_get_a_401_envelope_instead_of_provider_details(catalog):
    response, body = await get("/health/providers", headers={})

    assert response.status_code == 401
    assert body == {
        "error": {
            "message": body["error"]["message"],
            "type": "invalid_request_error",
            "param": None,
            "code": "not_authenticated",
        }
    }
    for leaked in (b"openai", b"gpt-4o", b"local", b"failures"):
        assert leaked not in response.content
    assert "basic" not in response.headers.get("WWW-Authenticate", "").lower()


@pytest.mark.parametrize(
    "authorization", ["Bearer wrong-token", f"Bearer {METRICS_TOKEN}x", f"Token {METRICS_TOKEN}"]
)
async def test_a_wrong_metrics_token_gets_no_details(catalog, authorization):
    headers = {"Authorization": authorization}
    response, body = await get("/health/providers", headers=headers)
    assert response.status_code in (401, 403)
    assert set(body) == {"error"}

    response, body = await get("/ready", headers=headers)
    assert set(body) == {"status"}


async def test_no_metrics_token_configured_accepts_none(catalog, settings):
    settings.GATEWAY_METRICS_TOKEN = ""
    response, _ = await get("/health/providers", headers={"Authorization": "Bearer "})
    assert response.status_code == 401
    response, _ = await get("/health/providers", headers={"Authorization": "Bearer x"})
    assert response.status_code == 403


async def test_the_metrics_token_sees_every_detail(stub_only):
    response, body = await get("/ready")

    assert response.status_code == 200
    assert set(body) >= {"status", "checks", "usable_targets", "audit_pending"}
    assert response.headers["Cache-Control"] == "private, no-store"


@pytest.fixture
def staff_client(transactional_db) -> AsyncClient:
    client = AsyncClient()
    client.force_login(get_user_model().objects.create_user("ops", password="x", is_staff=True))
    return client


@pytest.fixture
def non_staff_client(transactional_db) -> AsyncClient:
    client = AsyncClient()
    client.force_login(get_user_model().objects.create_user("dev", password="x"))
    return client


async def test_a_staff_session_sees_every_detail(catalog, staff_client):
    response, body = await get("/health/providers", headers={}, client=staff_client)
    assert response.status_code == 200
    assert [target["key"] for target in body][:1] == ["local/echo"]

    response, body = await get("/ready", headers={}, client=staff_client)
    assert set(body) >= {"status", "checks", "usable_targets", "audit_pending"}


async def test_a_session_that_is_not_staff_sees_no_details(catalog, non_staff_client):
    response, body = await get("/health/providers", headers={}, client=non_staff_client)
    assert response.status_code == 403
    assert body["error"]["type"] == "permission_error"

    response, body = await get("/ready", headers={}, client=non_staff_client)
    assert body == {"status": "ok"}


async def test_liveness_stays_public_and_minimal(transactional_db):
    response, body = await get("/health", headers={})
    assert (response.status_code, body) == (200, {"status": "ok"})
