"""`GET /metrics` through the gateway's ASGI application, in-process: who may read it (the
token, the address allow-list, X-Forwarded-For only from trusted proxies), refusals in the
error envelope, and the figures read at scrape time (circuits, budgets, audit backlog)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import orjson
import pytest
from asgiref.sync import sync_to_async
from prometheus_client.parser import text_string_to_metric_families

from audit import spool
from billing.models import Budget
from gateway_project.settings import _cidrs
from providers.circuit import breaker
from tests.conftest import forget_governance_counters
from tests.personas import Personas
from tests.test_health import open_circuit

pytestmark = pytest.mark.django_db(transaction=True)
TOKEN = "metrics-token-for-these-tests"
ELSEWHERE = "198.51.100.7"


@pytest.fixture(autouse=True)
def _settings(settings, fresh_circuits: None) -> None:
    settings.GATEWAY_METRICS_TOKEN = ""
    settings.GATEWAY_METRICS_ALLOWED_IPS = ["127.0.0.0/8", "::1/128"]
    settings.GATEWAY_METRICS_TRUSTED_PROXIES = []


async def scrape(
    address: str = "127.0.0.1", headers: dict[str, str] | None = None
) -> httpx.Response:
    """GET /metrics from a client at `address` (what the server reports as its peer)."""
    from gateway_project.asgi import application

    transport = httpx.ASGITransport(app=application, client=(address, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as http:
        return await http.get("/metrics", headers=headers or {})


def refused(response: httpx.Response, status: int, code: str) -> str:
    """The error envelope of a refusal; its message."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    assert "gateway_requests_total" not in response.text
    return error["message"]


def samples(response: httpx.Response) -> dict[tuple[str, tuple], float]:
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


# --- who may read it -----------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["127.0.0.1", "::1", "::ffff:127.0.0.1"])
async def test_this_machine_may_read_it_by_default(transactional_db, address):
    response = await scrape(address)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert response.headers["cache-control"] == "no-store"
    assert "# TYPE gateway_metrics_collector_up gauge" in response.text


async def test_another_address_is_refused_when_no_token_could_help(transactional_db):
    message = refused(await scrape(ELSEWHERE), 403, "address_not_allowed")
    assert ELSEWHERE in message and "GATEWAY_METRICS_ALLOWED_IPS" in message


async def test_another_address_is_asked_for_the_token_when_there_is_one(transactional_db, settings):
    settings.GATEWAY_METRICS_TOKEN = TOKEN
    response = await scrape(ELSEWHERE)
    refused(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"] == 'Bearer realm="gateway-metrics"'


async def test_the_token_is_let_in_from_anywhere(transactional_db, settings):
    settings.GATEWAY_METRICS_TOKEN = TOKEN
    settings.GATEWAY_METRICS_ALLOWED_IPS = []
    response = await scrape(ELSEWHERE, {"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


@pytest.mark.parametrize("token", ["", TOKEN])
@pytest.mark.parametrize("authorization", ["Bearer wrong", f"Bearer {TOKEN}x"])
async def test_a_wrong_token_is_refused_even_from_an_allowed_address(
    transactional_db, settings, token, authorization
):
    settings.GATEWAY_METRICS_TOKEN = token
    refused(
        await scrape("127.0.0.1", {"Authorization": authorization}), 403, "invalid_metrics_token"
    )


async def test_an_empty_allow_list_means_the_token_only(transactional_db, settings):
    settings.GATEWAY_METRICS_ALLOWED_IPS = []
    refused(await scrape("127.0.0.1"), 403, "address_not_allowed")


async def test_an_allowed_network_lets_its_addresses_in(transactional_db, settings):
    settings.GATEWAY_METRICS_ALLOWED_IPS = ["198.51.100.0/24"]
    assert (await scrape(ELSEWHERE)).status_code == 200
    refused(await scrape("198.51.101.7"), 403, "address_not_allowed")


async def test_x_forwarded_for_is_not_believed_by_default(transactional_db):
    refused(await scrape(ELSEWHERE, {"X-Forwarded-For": "127.0.0.1"}), 403, "address_not_allowed")
    assert (await scrape("127.0.0.1", {"X-Forwarded-For": ELSEWHERE})).status_code == 200


async def test_x_forwarded_for_is_believed_from_a_trusted_proxy(transactional_db, settings):
    settings.GATEWAY_METRICS_TRUSTED_PROXIES = ["10.0.0.0/8"]
    settings.GATEWAY_METRICS_ALLOWED_IPS = ["192.0.2.0/24"]
    proxy = "10.1.2.3"
    # The client is the right-most address the trusted proxies did not add.
    assert (await scrape(proxy, {"X-Forwarded-For": "192.0.2.9, 10.9.9.9"})).status_code == 200
    spoofed = {"X-Forwarded-For": "192.0.2.9, 203.0.113.5"}  # the client wrote the first one
    refused(await scrape(proxy, spoofed), 403, "address_not_allowed")
    refused(await scrape(proxy, {"X-Forwarded-For": "nonsense"}), 403, "address_not_allowed")
    # Not from a trusted proxy: the header is ignored, the peer is the client.
    refused(await scrape(ELSEWHERE, {"X-Forwarded-For": "192.0.2.9"}), 403, "address_not_allowed")


async def test_it_is_not_found_when_metrics_are_off(transactional_db, settings):
    settings.GATEWAY_METRICS_ENABLED = False
    refused(await scrape(), 404, "not_found")


def test_an_allow_list_that_is_not_a_network_stops_the_start(monkeypatch):
    from django.core.exceptions import ImproperlyConfigured

    monkeypatch.setenv("GATEWAY_METRICS_ALLOWED_IPS", "10.0.0.0/8, localhost")
    with pytest.raises(ImproperlyConfigured, match="GATEWAY_METRICS_ALLOWED_IPS"):
        _cidrs("GATEWAY_METRICS_ALLOWED_IPS")


# --- what is read at scrape time -------------------------------------------------------------------


@pytest.fixture
async def governed(personas: Personas) -> AsyncIterator[Personas]:
    await forget_governance_counters()
    yield personas
    await forget_governance_counters()


async def test_it_shows_the_circuit_state_of_every_configured_target(personas: Personas):
    await open_circuit("local", "echo")
    values = samples(await scrape())
    state = {
        labels[2][1]: value
        for (name, labels), value in values.items()
        if name == "gateway_circuit_state" and dict(labels)["provider"] == "local"
    }
    assert state == {"closed": 0.0, "open": 1.0, "half_open": 0.0}
    assert values[("gateway_metrics_collector_up", (("collector", "circuits"),))] == 1.0


async def test_it_shows_what_is_left_of_each_budget_in_use(governed: Personas):
    acme = governed.acme
    budget = await Budget.objects.acreate(
        scope="tenant",
        tenant=acme.tenant,
        period="monthly",
        max_cost_usd=Decimal("5"),
        max_tokens=10_000,
    )
    labels = (
        ("budget", str(budget.id)),
        ("period", "monthly"),
        ("scope", "tenant"),
        ("subject", "acme"),
    )
    assert ("gateway_budget_remaining_usd", labels) not in samples(await scrape())  # unused yet

    from django.test import AsyncClient

    answer = await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": "hi"}]}),
        content_type="application/json",
        headers={"authorization": f"Bearer {acme.plaintext_key}"},
    )
    assert answer.status_code == 200
    from audit.models import AuditEvent
    from audit.writer import audit_writer

    await sync_to_async(audit_writer.flush)()
    row = await AuditEvent.objects.aget(request_id=answer["x-request-id"])
    values = samples(await scrape())
    assert values[("gateway_budget_remaining_usd", labels)] == pytest.approx(
        5 - float(row.cost_usd)
    )
    assert values[("gateway_budget_remaining_tokens", labels)] == 10_000 - row.total_tokens
    assert values[("gateway_budgets_left_out", ())] == 0


async def test_budgets_past_the_bound_are_left_out_and_counted(governed: Personas, settings):
    settings.GATEWAY_METRICS_MAX_BUDGETS = 1
    for period in ("daily", "monthly"):
        await Budget.objects.acreate(
            scope="tenant", tenant=governed.acme.tenant, period=period, max_tokens=10
        )
    assert samples(await scrape())[("gateway_budgets_left_out", ())] == 1


async def test_it_shows_the_audit_spool_and_dead_letters(transactional_db):
    path = spool.dead_letter_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    before = spool.dead_letter_count()
    with path.open("ab") as handle:
        handle.write(orjson.dumps({"request_id": "req_metrics_test"}) + b"\n")
    try:
        values = samples(await scrape())
        assert values[("gateway_audit_dead_letters", ())] == before + 1
        assert values[("gateway_audit_spooled_rows", ())] == spool.spooled_row_count()
    finally:
        lines = path.read_bytes().splitlines(keepends=True)
        path.write_bytes(b"".join(line for line in lines if b"req_metrics_test" not in line))


async def test_a_part_that_cannot_be_read_is_left_out_and_said(personas: Personas, settings):
    await Budget.objects.acreate(
        scope="tenant", tenant=personas.acme.tenant, period="monthly", max_tokens=10
    )
    working = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens there
    breaker.forget()
    try:
        values = samples(await scrape())
    finally:
        settings.REDIS_URL = working  # before the fixtures' teardown, which uses it
    up = {
        dict(labels)["collector"]: value
        for (name, labels), value in values.items()
        if name == "gateway_metrics_collector_up"
    }
    assert up == {"configuration": 1.0, "circuits": 0.0, "budgets": 0.0, "audit": 1.0}
    assert not [
        name for name, _ in values if name.startswith(("gateway_circuit", "gateway_budget"))
    ]
    assert ("gateway_audit_pending_rows", ()) in values  # the workers' files are still read
