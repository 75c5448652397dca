"""`POST /v1/embeddings` in-process against the stub: inputs, formats, sizes, validation,
the audit row, the ledger line and the budget."""

from __future__ import annotations

import base64
import math
import struct
from decimal import Decimal

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from audit.services import redaction_rule_upsert
from billing.models import Budget, UsageLine
from providers.models import ProviderModel
from providers.tokens import estimate_tokens
from tests import factories
from tests.conftest import assert_envelope, forget_governance_counters
from tests.personas import Personas
from tests.routing.proxy.test_handler import audit_rows

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def embedder(personas: Personas) -> ProviderModel:
    """`stub-embed`, an embedding model on the stub priced like `echo`, behind the global
    route `embed` (the route `echo` names a chat model: it serves no embeddings)."""
    model = factories.make_model(
        personas.provider, "stub-embed", input_per_million="1.50", output_per_million="0"
    )
    factories.make_route("embed", model)
    return model


async def embed(key: str | None, body: object, **headers: str):
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return await AsyncClient().post(
        "/v1/embeddings", data=data, content_type="application/json", headers=headers
    )


def norm(vector: list[float]) -> float:
    return math.sqrt(math.fsum(value * value for value in vector))


async def test_it_embeds_a_string_as_a_unit_vector_of_1536_by_default(personas):
    response = await embed(personas.acme.plaintext_key, {"model": "embed", "input": "Hello"})
    assert response.status_code == 200, response.content
    body = orjson.loads(response.content)
    assert (body["object"], body["model"]) == ("list", "stub-embed")
    [item] = body["data"]
    assert (item["object"], item["index"]) == ("embedding", 0)
    assert len(item["embedding"]) == 1536
    assert norm(item["embedding"]) == pytest.approx(1.0)
    tokens = estimate_tokens("Hello")
    assert body["usage"] == {"prompt_tokens": tokens, "total_tokens": tokens}
    assert response["x-gateway-provider"] == "local"


async def test_the_same_input_gets_the_same_vector_and_another_input_another(personas):
    key = personas.acme.plaintext_key
    first = orjson.loads((await embed(key, {"model": "embed", "input": ["a", "b"]})).content)
    again = orjson.loads((await embed(key, {"model": "embed", "input": "a"})).content)
    assert first["data"][0]["embedding"] == again["data"][0]["embedding"]
    assert first["data"][0]["embedding"] != first["data"][1]["embedding"]
    assert [item["index"] for item in first["data"]] == [0, 1]


async def test_dimensions_sets_the_size(personas):
    response = await embed(
        personas.acme.plaintext_key,
        {"model": "embed", "input": ["one", "two", "three"], "dimensions": 256},
    )
    data = orjson.loads(response.content)["data"]
    assert [len(item["embedding"]) for item in data] == [256, 256, 256]
    assert all(norm(item["embedding"]) == pytest.approx(1.0) for item in data)


async def test_base64_is_little_endian_float32(personas):
    key = personas.acme.plaintext_key
    floats = orjson.loads((await embed(key, {"model": "embed", "input": "x"})).content)
    encoded = orjson.loads(
        (await embed(key, {"model": "embed", "input": "x", "encoding_format": "base64"})).content
    )
    raw = base64.b64decode(encoded["data"][0]["embedding"])
    decoded = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert decoded == pytest.approx(floats["data"][0]["embedding"], abs=1e-6)


@pytest.mark.parametrize(
    ("value", "tokens", "kept"),
    [([5, 6, 7], 3, ["[3 tokens]"]), ([[1, 2], [3, 4, 5]], 5, ["[2 tokens]", "[3 tokens]"])],
)
async def test_token_arrays_are_embedded_and_counted_by_length(personas, value, tokens, kept):
    response = await embed(personas.acme.plaintext_key, {"model": "embed", "input": value})
    body = orjson.loads(response.content)
    assert len(body["data"]) == len(kept)
    [row] = await audit_rows()
    assert body["usage"]["prompt_tokens"] == row.prompt_tokens == tokens
    assert row.completion_tokens == 0
    assert row.prompt == [{"role": "user", "content": text} for text in kept]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "embed"}, "input"),
        ({"model": "embed", "input": ""}, "input"),
        ({"model": "embed", "input": []}, "input"),
        ({"model": "embed", "input": ["ok", 3]}, "input"),
        ({"model": "embed", "input": ["ok", ""]}, "input[1]"),
        ({"model": "embed", "input": [[1], [-2]]}, "input[1]"),
        ({"model": "embed", "input": 42}, "input"),
        ({"model": "embed", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "embed", "input": "x", "dimensions": 0}, "dimensions"),
        ({"model": "embed", "input": "x", "dimensions": "256"}, "dimensions"),
        ({"model": "embed", "input": "x", "user": 7}, "user"),
        ({"input": "x"}, "model"),
        ({"model": "embed", "input": "x", "api_base": "http://evil"}, "api_base"),
    ],
)
async def test_bad_requests_are_400_naming_the_param_and_audited(personas, body, param):
    response = await embed(personas.acme.plaintext_key, body)
    error = assert_envelope(response, 400, "invalid_request_error")
    assert error["param"] == param
    [row] = await audit_rows()
    assert (row.status_code, row.metadata["endpoint"]) == (400, "embeddings")


async def test_too_many_inputs_are_refused(personas):
    response = await embed(personas.acme.plaintext_key, {"model": "embed", "input": ["a"] * 2049})
    assert assert_envelope(response, 400, "invalid_request_error")["param"] == "input"


async def test_a_bad_key_is_401_and_an_unknown_route_404(personas):
    assert_envelope(
        await embed("gwk_nope", {"model": "embed", "input": "x"}), 401, "invalid_request_error"
    )
    assert_envelope(
        await embed(personas.acme.plaintext_key, {"model": "nope", "input": "x"}),
        404,
        "invalid_request_error",
        "model_not_found",
    )


async def test_the_audit_row_keeps_the_redacted_input_and_never_the_vectors(personas):
    await sync_to_async(redaction_rule_upsert)(
        name="e-mail", detector="email", replacement="[EMAIL]"
    )
    response = await embed(
        personas.acme.plaintext_key,
        {"model": "embed", "input": ["mail mario.rossi@example.com", "plain"], "user": "u1"},
    )
    assert response.status_code == 200
    [row] = await audit_rows()
    assert row.request_id == response["x-request-id"]
    assert row.prompt == [
        {"role": "user", "content": "mail [EMAIL]"},
        {"role": "user", "content": "plain"},
    ]
    assert row.response == "2 embeddings x 1536"
    assert row.metadata["endpoint"] == "embeddings" and row.metadata["user"] == "u1"
    assert (row.route, row.provider, row.model, row.outcome) == (
        "embed",
        "local",
        "stub-embed",
        "success",
    )


async def test_the_ledger_line_prices_the_input_tokens_only(personas, embedder):
    response = await embed(personas.acme.plaintext_key, {"model": "embed", "input": "a" * 40})
    assert response.status_code == 200
    [row] = await audit_rows()
    line = await sync_to_async(UsageLine.objects.get)(request_id=response["x-request-id"])
    assert (line.prompt_tokens, line.completion_tokens, line.total_tokens) == (10, 0, 10)
    assert line.cost_usd == Decimal(10) * embedder.input_per_million / 1_000_000
    assert line.cost_usd == row.cost_usd and line.metadata["endpoint"] == "embeddings"


async def test_a_budget_refuses_once_exhausted(personas: Personas):
    await forget_governance_counters()
    await sync_to_async(Budget.objects.create)(
        scope="tenant", tenant=personas.acme.tenant, period="daily", max_tokens=15
    )
    key = personas.acme.plaintext_key
    # 10 tokens (13 reserved: the estimate's margin), then 5 left: too few for another.
    first = await embed(key, {"model": "embed", "input": "a" * 40})
    assert first.status_code == 200, first.content
    refused = await embed(key, {"model": "embed", "input": "a" * 40})
    assert_envelope(refused, 429, "insufficient_quota")
    assert refused["x-should-retry"] == "false"


async def test_a_chat_only_route_is_a_400_that_lists_its_targets(personas):
    response = await embed(personas.acme.plaintext_key, {"model": "echo", "input": "x"})
    error = assert_envelope(response, 400, "invalid_request_error", "embeddings_not_supported")
    assert error["param"] == "model"
    assert "'echo'" in error["message"] and "local/echo (stub)" in error["message"]
    [row] = await audit_rows()
    assert (row.status_code, row.route, row.metadata["endpoint"]) == (400, "echo", "embeddings")


async def test_an_anthropic_route_is_a_400_even_naming_an_embedding_model(personas):
    claude = await sync_to_async(factories.make_provider)(
        "claude-co", kind="anthropic", base_url="http://127.0.0.1:9"
    )
    model = await sync_to_async(factories.make_model)(claude, "claude-embed")
    await sync_to_async(factories.make_route)("claude", model, tenant=personas.acme.tenant)
    response = await embed(personas.acme.plaintext_key, {"model": "claude", "input": "x"})
    error = assert_envelope(response, 400, "invalid_request_error", "embeddings_not_supported")
    assert "claude-co/claude-embed (anthropic)" in error["message"]


async def test_a_mixed_route_skips_its_chat_and_anthropic_targets(personas, embedder):
    claude = await sync_to_async(factories.make_provider)(
        "claude-co", kind="anthropic", base_url="http://127.0.0.1:9"
    )
    model = await sync_to_async(factories.make_model)(claude, "claude-x")
    await sync_to_async(factories.make_route)(
        "mixed", model, personas.model, embedder, tenant=personas.acme.tenant
    )
    response = await embed(personas.acme.plaintext_key, {"model": "mixed", "input": "x"})
    assert response.status_code == 200
    assert (response["x-gateway-provider"], response["x-gateway-model"]) == ("local", "stub-embed")
    [row] = await audit_rows()
    assert (row.model, row.attempts, row.fallback_used) == ("stub-embed", 1, False)
