"""`POST /v1/messages` and `/v1/messages/count_tokens` in-process (ASGI handler, real
database): Anthropic's answers, events and errors; the audit row, the ledger line and the
limits of a Messages request."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from audit.models import AuditEvent
from audit.writer import audit_writer
from billing.models import RateLimit, UsageLine
from routing import cache as response_cache
from tests import factories
from tests.conftest import forget_governance_counters

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Hello there"}]


async def post(key: str | None, body: object, path: str = "/v1/messages", **headers: str):
    if key:
        headers["x-api-key"] = key
    headers.setdefault("anthropic-version", "2023-06-01")
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return await AsyncClient().post(
        path, data=data, content_type="application/json", headers=headers
    )


async def audit_rows() -> list[AuditEvent]:
    await sync_to_async(audit_writer.flush)()
    return await sync_to_async(lambda: list(AuditEvent.objects.order_by("created_at")))()


def events(content: bytes) -> list[tuple[str, dict]]:
    out = []
    for frame in content.decode().split("\n\n"):
        if not frame.strip():
            continue
        name_line, data_line = frame.split("\n")
        out.append(
            (name_line.removeprefix("event: "), orjson.loads(data_line.removeprefix("data: ")))
        )
    return out


async def test_it_answers_a_message_and_audits_it(personas):
    response = await post(
        personas.acme.plaintext_key, {"model": "echo", "max_tokens": 50, "messages": HELLO}
    )
    assert response.status_code == 200, response.content
    body = orjson.loads(response.content)
    assert body["type"] == "message" and body["role"] == "assistant"
    assert body["id"].startswith("msg_")
    assert body["content"][0]["type"] == "text"
    assert "Hello there" in body["content"][0]["text"]
    assert body["stop_reason"] == "end_turn"
    assert body["usage"]["input_tokens"] > 0 and body["usage"]["output_tokens"] > 0
    [row] = await audit_rows()
    assert row.request_id == response["x-request-id"]
    assert (row.outcome, row.status_code, row.route) == ("success", 200, "echo")
    assert row.metadata["endpoint"] == "messages"
    assert row.prompt_tokens == body["usage"]["input_tokens"]
    assert row.completion_tokens == body["usage"]["output_tokens"]
    line = await sync_to_async(UsageLine.objects.get)(request_id=row.request_id)
    assert line.cost_usd == row.cost_usd > 0


async def test_it_streams_anthropic_events(personas):
    response = await post(
        personas.acme.plaintext_key,
        {"model": "echo", "max_tokens": 50, "messages": HELLO, "stream": True},
    )
    assert response.status_code == 200
    assert response["content-type"].startswith("text/event-stream")
    content = b"".join([part async for part in response.streaming_content])
    names = [name for name, _ in events(content)]
    assert names[:3] == ["message_start", "ping", "content_block_start"]
    assert set(names[3:-3]) == {"content_block_delta"}
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]


@pytest.fixture
def dropping(personas, fake_openai):
    """acme's route `dropping`: a fake OpenAI model that cuts its stream after two chunks."""
    provider = factories.make_provider(
        "fake-openai", kind="openai", base_url=fake_openai.openai_base_url, max_retries=0
    )
    model = factories.make_model(provider, "midstream-drop")
    return factories.make_route("dropping", model, tenant=personas.acme.tenant)


async def test_a_failure_mid_stream_is_an_error_event(personas, dropping):
    response = await post(
        personas.acme.plaintext_key,
        {"model": "dropping", "max_tokens": 50, "messages": HELLO, "stream": True},
    )
    assert response.status_code == 200
    content = b"".join([part async for part in response.streaming_content])
    sent = events(content)
    assert sent[0][0] == "message_start"
    name, payload = sent[-1]
    assert name == "error"
    assert payload["type"] == "error" and payload["error"]["type"] == "api_error"
    [row] = await audit_rows()
    assert (row.outcome, row.metadata["endpoint"]) == ("upstream_error", "messages")


@pytest.fixture
def one_request_a_minute(personas):
    RateLimit.objects.create(scope="key", api_key=personas.acme.key, rpm=1)
    return personas


async def test_a_message_counts_against_the_rate_limits(one_request_a_minute):
    await forget_governance_counters()
    key = one_request_a_minute.acme.plaintext_key
    body = {"model": "echo", "max_tokens": 20, "messages": HELLO}
    assert (await post(key, body)).status_code == 200
    refused = await post(key, body)
    assert refused.status_code == 429
    assert orjson.loads(refused.content)["error"]["type"] == "rate_limit_error"
    assert refused["retry-after"]
    rows = await audit_rows()
    assert [row.outcome for row in rows] == ["success", "rejected"]


async def test_a_bad_key_is_401_in_anthropics_envelope(personas):
    response = await post("gw-nope", {"model": "echo", "max_tokens": 5, "messages": HELLO})
    assert response.status_code == 401
    body = orjson.loads(response.content)
    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == "authentication_error"


async def test_the_bearer_header_is_accepted_too(personas):
    client = AsyncClient()
    response = await client.post(
        "/v1/messages",
        data=orjson.dumps({"model": "echo", "max_tokens": 5, "messages": HELLO}),
        content_type="application/json",
        headers={"authorization": f"Bearer {personas.acme.plaintext_key}"},
    )
    assert response.status_code == 200


async def test_malformed_json_is_an_invalid_request(personas):
    response = await post(personas.acme.plaintext_key, b"{oops")
    assert response.status_code == 400
    assert orjson.loads(response.content)["error"]["type"] == "invalid_request_error"


async def test_count_tokens_is_local_and_audited_without_usage(personas):
    response = await post(
        personas.acme.plaintext_key,
        {"model": "echo", "messages": HELLO, "system": "Be brief."},
        path="/v1/messages/count_tokens",
    )
    assert response.status_code == 200, response.content
    count = orjson.loads(response.content)["input_tokens"]
    assert count > 0
    [row] = await audit_rows()
    assert row.metadata["endpoint"] == "messages.count_tokens"
    assert row.metadata["input_tokens"] == count
    assert (row.prompt_tokens, row.cost_usd, row.provider) == (0, 0, "")


async def test_count_tokens_refuses_a_bad_key_and_an_unknown_model(personas):
    path = "/v1/messages/count_tokens"
    bad = await post("gw-nope", {"model": "echo", "messages": HELLO}, path=path)
    assert bad.status_code == 401
    unknown = await post(
        personas.acme.plaintext_key, {"model": "nope", "messages": HELLO}, path=path
    )
    assert unknown.status_code == 404
    assert orjson.loads(unknown.content)["error"]["type"] == "not_found_error"


@pytest.fixture
async def cached(personas):
    """`cached`: a global route to the stub's echo that keeps answers for a minute."""
    await response_cache.clear()

    def make():
        route = factories.make_route("cached", personas.model)
        route.cache_ttl_seconds = 60
        route.save()  # through post_save: the snapshot sees it
        return route

    yield await sync_to_async(make)()
    await response_cache.clear()


async def test_a_cached_answer_is_served_as_a_message_and_as_events(personas, cached):
    key = personas.acme.plaintext_key
    body = {"model": "cached", "max_tokens": 30, "messages": HELLO}
    first = await post(key, body)
    assert first["x-cache"] == "MISS"
    await asyncio.sleep(0.05)  # the store runs after the response
    hit = await post(key, body)
    assert hit["x-cache"] == "HIT"
    assert orjson.loads(hit.content)["content"] == orjson.loads(first.content)["content"]
    streamed = await post(key, {**body, "stream": True})
    assert streamed["x-cache"] == "HIT"
    sent = events(b"".join([part async for part in streamed.streaming_content]))
    text = "".join(p["delta"]["text"] for n, p in sent if n == "content_block_delta")
    assert text == orjson.loads(first.content)["content"][0]["text"]
    assert sent[-2][1]["usage"]["output_tokens"] > 0
