"""What one finished request adds to the metrics, for each way a request can end: through
the real proxy, in-process (ASGI handler, real database, Redis or the in-process fakeredis),
read back from the metric files (tests/routing/metrics/support.py)."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from audit.models import AuditEvent
from audit.writer import audit_writer
from billing.models import Budget, RateLimit
from routing import cache as response_cache
from routing.metrics import recording
from tests import factories
from tests.conftest import forget_governance_counters
from tests.personas import Personas
from tests.routing.metrics.support import Changes, series_name

pytestmark = pytest.mark.django_db(transaction=True)
USER = [{"role": "user", "content": "How many moons has Mars?"}]


@pytest.fixture(autouse=True)
async def _fresh_counters():
    await forget_governance_counters()
    await response_cache.clear()
    yield
    await response_cache.clear()


async def post(key: str, body: dict, path: str = "/v1/chat/completions"):
    response = await AsyncClient().post(
        path,
        data=orjson.dumps(body),
        content_type="application/json",
        headers={"authorization": f"Bearer {key}"},
    )
    if response.streaming:
        response.consumed = b"".join([part async for part in response.streaming_content])
    return response


def chat(model: str = "echo", **extra: object) -> dict:
    return {"model": model, "messages": USER, **extra}


async def audit_row(response) -> AuditEvent:
    await sync_to_async(audit_writer.flush)()
    return await AuditEvent.objects.aget(request_id=response["x-request-id"])


def requests(**labels: str) -> str:
    defaults = {
        "tenant": "acme",
        "route": "echo",
        "endpoint": "chat",
        "provider": "local",
        "model": "echo",
        "status": "200",
        "outcome": "success",
    }
    return series_name("gateway_requests_total", {**defaults, **labels})


def served(name: str, **labels: str) -> str:
    defaults = {"tenant": "acme", "route": "echo", "provider": "local", "model": "echo"}
    return series_name(name, {**defaults, **labels})


def genai(name: str, **labels: str) -> str:
    defaults = {
        "gen_ai_operation_name": "chat",
        "gen_ai_provider_name": "stub",
        "gen_ai_request_model": "echo",
        "gen_ai_response_model": "echo",
    }
    return series_name(name, {**defaults, **labels})


def billed(row: AuditEvent, **labels: str) -> dict[str, float]:
    """The token and cost counters of a billed request."""
    return {
        served("gateway_tokens_total", type="input", **labels): row.prompt_tokens,
        served("gateway_tokens_total", type="output", **labels): row.completion_tokens,
        served("gateway_cost_usd_total", **labels): float(row.cost_usd),
    }


async def test_a_success_counts_the_request_its_tokens_cost_and_duration(personas: Personas):
    changes = Changes()

    response = await post(personas.acme.plaintext_key, chat())

    assert response.status_code == 200
    row = await audit_row(response)
    assert row.prompt_tokens > 0 and row.completion_tokens > 1 and row.cost_usd > 0
    assert changes("gateway_") == pytest.approx({requests(): 1, **billed(row)})
    assert changes("gen_ai_") == {
        genai("gen_ai_server_request_duration_seconds_count"): 1,
        genai("gen_ai_client_token_usage_count", gen_ai_token_type="input"): 1,
        genai("gen_ai_client_token_usage_count", gen_ai_token_type="output"): 1,
    }


async def test_a_stream_also_counts_its_first_token_and_time_per_token(personas: Personas):
    changes = Changes()

    response = await post(personas.acme.plaintext_key, chat(stream=True))

    assert response.status_code == 200 and response.consumed.endswith(b"data: [DONE]\n\n")
    row = await audit_row(response)
    assert changes("gateway_") == pytest.approx({requests(): 1, **billed(row)})
    assert changes("gen_ai_") == {
        genai("gen_ai_server_request_duration_seconds_count"): 1,
        genai("gen_ai_client_token_usage_count", gen_ai_token_type="input"): 1,
        genai("gen_ai_client_token_usage_count", gen_ai_token_type="output"): 1,
        genai("gen_ai_server_time_to_first_token_seconds_count"): 1,
        genai("gen_ai_server_time_per_output_token_seconds_count"): 1,
    }


async def test_a_cache_hit_is_counted_as_a_hit_and_bills_nothing(personas: Personas):
    route = await sync_to_async(factories.make_route)("cached", personas.model)
    route.cache_ttl_seconds = 60
    await route.asave()
    key = personas.acme.plaintext_key
    first = await post(key, chat("cached"))
    assert first["x-cache"] == "MISS"
    miss = await audit_row(first)
    changes = Changes()

    hit = await post(key, chat("cached"))

    assert hit.status_code == 200 and hit["x-cache"] == "HIT"
    assert changes() == {
        requests(route="cached", provider="", model=""): 1,
        series_name(
            "gateway_cache_lookups_total", {"tenant": "acme", "route": "cached", "result": "exact"}
        ): 1,
    }
    assert miss.provider == "local"  # the miss went upstream (and was counted as a miss)


async def test_a_fallback_counts_the_retry_and_the_fallback(personas: Personas, fake_openai):
    provider = await sync_to_async(factories.make_provider)(
        "fake-openai", kind="openai", base_url=fake_openai.openai_base_url, max_retries=1
    )
    failing = await sync_to_async(factories.make_model)(provider, "fail-500")
    working = await sync_to_async(factories.make_model)(provider, "ok")
    await sync_to_async(factories.make_route)("gpt", failing, working, tenant=personas.acme.tenant)
    changes = Changes()

    response = await post(personas.acme.plaintext_key, chat("gpt"))

    assert response.status_code == 200 and response["x-gateway-fallback"] == "true"
    row = await audit_row(response)
    assert (row.attempts, row.fallback_used) == (3, True)  # fail-500 twice, then ok
    theirs = {"route": "gpt", "provider": "fake-openai", "model": "ok"}
    assert changes("gateway_") == pytest.approx(
        {
            requests(**theirs): 1,
            **billed(row, **theirs),
            series_name("gateway_fallbacks_total", {"tenant": "acme", "route": "gpt"}): 1,
            series_name("gateway_upstream_retries_total", {"tenant": "acme", "route": "gpt"}): 1,
        }
    )
    openai = {"gen_ai_provider_name": "openai", "gen_ai_request_model": "gpt"}
    assert changes("gen_ai_") == {
        genai(
            "gen_ai_server_request_duration_seconds_count", **openai, gen_ai_response_model="ok"
        ): 1,
        genai(
            "gen_ai_client_token_usage_count",
            **openai,
            gen_ai_response_model="ok",
            gen_ai_token_type="input",
        ): 1,
        genai(
            "gen_ai_client_token_usage_count",
            **openai,
            gen_ai_response_model="ok",
            gen_ai_token_type="output",
        ): 1,
    }


async def test_a_rate_limit_refusal_is_counted_as_one(personas: Personas):
    await RateLimit.objects.acreate(scope="key", api_key=personas.acme.key, rpm=1)
    key = personas.acme.plaintext_key
    assert (await post(key, chat())).status_code == 200
    changes = Changes()

    refused = await post(key, chat())

    assert refused.status_code == 429
    assert changes() == {
        requests(status="429", outcome="rejected", provider="", model=""): 1,
        series_name(
            "gateway_refusals_total", {"tenant": "acme", "route": "echo", "reason": "rate_limit"}
        ): 1,
    }


async def test_a_budget_refusal_is_counted_as_one(personas: Personas):
    await Budget.objects.acreate(
        scope="tenant",
        tenant=personas.acme.tenant,
        period="monthly",
        max_cost_usd=Decimal("0.000001"),
    )
    changes = Changes()

    refused = await post(personas.acme.plaintext_key, chat(max_tokens=1000))

    assert refused.status_code == 429
    assert orjson.loads(refused.content)["error"]["code"] == "insufficient_quota"
    assert changes() == {
        requests(status="429", outcome="rejected", provider="", model=""): 1,
        series_name(
            "gateway_refusals_total", {"tenant": "acme", "route": "echo", "reason": "budget"}
        ): 1,
    }


async def test_an_upstream_error_is_counted_with_its_error_type(personas: Personas, fake_openai):
    provider = await sync_to_async(factories.make_provider)(
        "fake-openai", kind="openai", base_url=fake_openai.openai_base_url, max_retries=0
    )
    failing = await sync_to_async(factories.make_model)(provider, "fail-502")
    await sync_to_async(factories.make_route)("broken", failing, tenant=personas.acme.tenant)
    changes = Changes()

    response = await post(personas.acme.plaintext_key, chat("broken"))

    assert response.status_code == 502
    assert changes("gateway_") == {
        requests(route="broken", status="502", outcome="upstream_error", provider="", model=""): 1,
    }
    assert changes("gen_ai_") == {
        genai(
            "gen_ai_server_request_duration_seconds_count",
            gen_ai_provider_name="openai",
            gen_ai_request_model="broken",
            gen_ai_response_model="fail-502",
            error_type="upstream_error",
        ): 1,
    }


async def test_names_a_client_made_up_never_become_label_values(personas: Personas):
    changes = Changes()

    missing = await post(personas.acme.plaintext_key, chat("no-such-route-7f3a"))
    header_routed = await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps(chat("made-up-model-9c1d")),
        content_type="application/json",
        headers={
            "authorization": f"Bearer {personas.acme.plaintext_key}",
            "x-route": "echo",
        },
    )

    assert missing.status_code == 404
    assert header_routed.status_code == 200
    moved = changes()
    assert (
        moved[requests(route="_OTHER", status="404", outcome="rejected", provider="", model="")]
        == 1
    )
    assert (
        moved[genai("gen_ai_server_request_duration_seconds_count", gen_ai_request_model="_OTHER")]
        == 1
    )
    assert not [name for name in moved if "no-such-route" in name or "made-up-model" in name]


async def test_the_key_label_is_there_only_when_asked_for(personas: Personas, settings):
    key = personas.acme.plaintext_key
    changes = Changes()
    await post(key, chat())
    assert requests() in changes("gateway_requests_total")

    settings.GATEWAY_METRICS_KEY_LABEL = True
    changes = Changes()
    await post(key, chat())
    assert changes("gateway_requests_total") == {requests(key=personas.acme.key.prefix): 1}


async def test_nothing_is_recorded_when_metrics_are_off(personas: Personas, settings):
    settings.GATEWAY_METRICS_ENABLED = False
    changes = Changes()

    response = await post(personas.acme.plaintext_key, chat())

    assert response.status_code == 200
    assert changes() == {}


async def test_a_failure_to_record_never_reaches_the_client(
    personas: Personas, monkeypatch, caplog
):
    def broken(*labels: str):
        raise RuntimeError("the metric files are gone")

    monkeypatch.setattr(recording, "requests", broken)
    monkeypatch.setattr(recording, "_last_complaint", float("-inf"))

    response = await post(personas.acme.plaintext_key, chat())

    assert response.status_code == 200
    assert (await audit_row(response)).outcome == "success"  # the row is still written
    assert "metrics: could not record request" in caplog.text
