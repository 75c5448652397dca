"""`POST /v1/embeddings` to the fake OpenAI server (real HTTP, real wire format), through the
official openai SDK talking to the production ASGI application in-process: float and base64
(the SDK's default), token arrays, fallback on a 5xx, Azure's deployment path, an upstream
that ignores `encoding_format`, and only the targets that name an embedding model."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import openai
import pytest
from asgiref.sync import sync_to_async

from tests import factories
from tests.fakes.openai_upstream import EMBEDDING_DIMENSIONS, fake_vector
from tests.fakes.upstreams import PROMPT_TOKENS
from tests.personas import Personas
from tests.routing.proxy.test_handler import audit_rows

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def client(personas: Personas) -> AsyncIterator[openai.AsyncOpenAI]:
    """The official async client, calling the gateway's ASGI application in this process."""
    from gateway_project.asgi import application

    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport) as http:
        yield openai.AsyncOpenAI(
            base_url="http://gateway.test/v1",
            api_key=personas.acme.plaintext_key,
            http_client=http,
            max_retries=0,
        )


def _make_routes(personas: Personas, fake_openai) -> None:
    def provider(kind: str, base_url: str):
        return factories.make_provider(
            f"fake-{kind}", kind=kind, base_url=base_url, timeout_s=5, max_retries=0
        )

    openai_fake = provider("openai", fake_openai.openai_base_url)
    azure_fake = provider("azure_openai", fake_openai.base_url)

    def route(name: str, *models: str, upstream=openai_fake) -> None:
        targets = [factories.make_model(upstream, m, input_per_million="0.02") for m in models]
        factories.make_route(name, *targets, tenant=personas.acme.tenant)

    route("embed", "text-embedding-3-small")
    fail = factories.make_model(openai_fake, "embed-fail-500")
    small = openai_fake.models.get(name="text-embedding-3-small")
    chat = factories.make_model(openai_fake, "ok")
    acme = personas.acme.tenant
    factories.make_route("embed-fallback", fail, small, tenant=acme)
    factories.make_route("chat-then-embed", chat, small, tenant=acme)
    factories.make_route("chat-only", chat, tenant=acme)
    route("embed-floats", "embed-floats-only")
    route("embed-no-usage", "embed-no-usage")
    route("embed-azure", "my-embed-deployment", upstream=azure_fake)


@pytest.fixture
async def routes(personas: Personas, fake_openai) -> None:
    await sync_to_async(_make_routes)(personas, fake_openai)


async def test_the_sdk_gets_floats_passed_through(client, routes, fake_openai):
    raw = await client.embeddings.with_raw_response.create(
        model="embed", input="Hello", encoding_format="float"
    )
    result = raw.parse()
    assert result.data[0].embedding == fake_vector("Hello", EMBEDDING_DIMENSIONS)
    assert result.usage.prompt_tokens == PROMPT_TOKENS
    sent = fake_openai.requests[-1]
    assert sent.path == "/v1/embeddings"
    assert sent.body == {
        "model": "text-embedding-3-small",
        "input": "Hello",
        "encoding_format": "float",
    }
    [row] = await audit_rows()
    assert row.request_id == raw.headers["x-request-id"]
    assert (row.provider, row.model, row.prompt_tokens, row.completion_tokens) == (
        "fake-openai",
        "text-embedding-3-small",
        PROMPT_TOKENS,
        0,
    )
    assert row.response == f"1 embeddings x {EMBEDDING_DIMENSIONS}"


async def test_the_sdk_default_base64_is_decoded_to_the_same_vectors(client, routes, fake_openai):
    result = await client.embeddings.create(model="embed", input=["a", "b"], dimensions=64)
    assert fake_openai.requests[-1].body["encoding_format"] == "base64"
    assert [item.embedding for item in result.data] == [fake_vector(t, 64) for t in ("a", "b")]


async def test_token_arrays_go_upstream_as_they_came(client, routes, fake_openai):
    result = await client.embeddings.create(model="embed", input=[[1, 2], [3]])
    assert fake_openai.requests[-1].body["input"] == [[1, 2], [3]]
    assert [item.embedding for item in result.data] == [
        fake_vector([1, 2], EMBEDDING_DIMENSIONS),
        fake_vector([3], EMBEDDING_DIMENSIONS),
    ]


async def test_a_5xx_falls_back_to_the_next_target(client, routes):
    raw = await client.embeddings.with_raw_response.create(model="embed-fallback", input="x")
    assert raw.headers["x-gateway-fallback"] == "true"
    assert raw.headers["x-gateway-model"] == "text-embedding-3-small"
    assert raw.parse().data[0].embedding == fake_vector("x", EMBEDDING_DIMENSIONS)
    [row] = await audit_rows()
    assert (row.attempts, row.fallback_used, row.outcome) == (2, True, "success")
    assert [a["status"] for a in row.attempt_log if not a["ok"]] == [500]


@pytest.mark.parametrize("encoding_format", ["base64", "float"])
async def test_floats_from_an_upstream_that_ignores_the_format_are_reencoded(
    client, routes, encoding_format
):
    response = await client.post(
        "/embeddings",
        body={"model": "embed-floats", "input": "x", "encoding_format": encoding_format},
        cast_to=httpx.Response,
    )
    embedding = response.json()["data"][0]["embedding"]
    assert isinstance(embedding, str if encoding_format == "base64" else list)
    result = await client.embeddings.create(model="embed-floats", input="x")
    assert result.data[0].embedding == fake_vector("x", EMBEDDING_DIMENSIONS)


async def test_an_upstream_without_usage_is_billed_by_our_count(client, routes):
    result = await client.embeddings.create(model="embed-no-usage", input="a" * 40)
    [row] = await audit_rows()
    assert row.prompt_tokens == result.usage.prompt_tokens > 0
    assert row.metadata["usage_estimated"] is True


async def test_azure_embeddings_use_the_deployment_path(client, routes, fake_openai):
    await client.embeddings.create(model="embed-azure", input="x")
    sent = fake_openai.requests[-1]
    assert sent.path.startswith("/openai/deployments/my-embed-deployment/embeddings")


async def test_the_sdk_sees_a_bad_request_as_such(client, routes):
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="embed", input="")
    assert caught.value.body["param"] == "input"


async def test_a_mixed_route_skips_its_chat_targets(client, routes, fake_openai):
    fake_openai.clear()
    raw = await client.embeddings.with_raw_response.create(model="chat-then-embed", input="x")
    assert raw.headers["x-gateway-model"] == "text-embedding-3-small"
    assert raw.headers["x-gateway-fallback"] == "false"
    assert [r.body["model"] for r in fake_openai.requests] == ["text-embedding-3-small"]
    [row] = await audit_rows()
    assert (row.model, row.attempts, row.fallback_used) == ("text-embedding-3-small", 1, False)


async def test_a_chat_only_route_is_refused_before_any_upstream_call(client, routes, fake_openai):
    fake_openai.clear()
    with pytest.raises(openai.BadRequestError) as caught:
        await client.embeddings.create(model="chat-only", input="x")
    error = caught.value.body
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "embeddings_not_supported",
        "model",
    )
    assert "'chat-only'" in error["message"] and "fake-openai/ok (openai)" in error["message"]
    assert fake_openai.requests == []
    [row] = await audit_rows()
    assert (row.status_code, row.metadata["endpoint"]) == (400, "embeddings")
