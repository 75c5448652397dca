"""The proxy path in-process (ASGI handler, real database): auth, errors, routing, audit."""

from __future__ import annotations

from datetime import timedelta

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from django.utils import timezone

from audit.models import AuditEvent
from audit.writer import audit_writer
from tenants.models import Tenant
from tenants.services import api_key_revoke
from tests.conftest import assert_envelope, count_queries_everywhere

pytestmark = pytest.mark.django_db(transaction=True)

USER = [{"role": "user", "content": "Hello there"}]


async def post(key: str | None, body: object, **headers: str):
    client = AsyncClient()
    if key:
        headers["authorization"] = f"Bearer {key}"
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    return await client.post(
        "/v1/chat/completions", data=data, content_type="application/json", headers=headers
    )


async def audit_rows() -> list[AuditEvent]:
    await sync_to_async(audit_writer.flush)()
    return await sync_to_async(lambda: list(AuditEvent.objects.order_by("created_at")))()


async def test_it_answers_a_completion_and_audits_it(personas):
    response = await post(personas.acme.plaintext_key, {"model": "echo", "messages": USER})
    assert response.status_code == 200
    body = orjson.loads(response.content)
    assert body["object"] == "chat.completion"
    assert body["choices"][0]["message"]["role"] == "assistant"
    assert response["x-gateway-provider"] == "local"
    [row] = await audit_rows()
    assert row.request_id == response["x-request-id"]
    assert row.outcome == "success" and row.status_code == 200
    assert row.tenant_id == personas.acme.tenant.id
    assert row.key_prefix == personas.acme.key.prefix
    assert (row.route, row.provider, row.model) == ("echo", "local", "echo")
    assert row.prompt_tokens == body["usage"]["prompt_tokens"] > 0
    assert row.completion_tokens == body["usage"]["completion_tokens"] > 0
    expected = (
        row.prompt_tokens * personas.model.input_per_million
        + row.completion_tokens * personas.model.output_per_million
    ) / 1_000_000
    assert row.cost_usd == expected
    assert row.prompt == USER
    assert row.response == body["choices"][0]["message"]["content"]
    assert len(row.config_version) == 16


async def test_the_api_key_may_come_in_x_api_key(personas):
    client = AsyncClient()
    response = await client.post(
        "/v1/chat/completions",
        data=orjson.dumps({"model": "echo", "messages": USER}),
        content_type="application/json",
        headers={"x-api-key": personas.acme.plaintext_key},
    )
    assert response.status_code == 200


async def test_a_stream_is_relayed_as_server_sent_events(personas):
    response = await post(
        personas.acme.plaintext_key,
        {
            "model": "echo",
            "messages": USER,
            "stream": True,
            "stream_options": {"include_usage": True},
        },
    )
    assert response.status_code == 200
    assert response["content-type"] == "text/event-stream"
    assert response["cache-control"] == "no-cache"
    raw = b"".join([part async for part in response.streaming_content])
    events = [line[6:] for line in raw.split(b"\n\n") if line.startswith(b"data: ")]
    assert events[-1] == b"[DONE]"
    chunks = [orjson.loads(e) for e in events[:-1]]
    assert len({(c["id"], c["created"]) for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0
    [row] = await audit_rows()
    assert row.stream and row.outcome == "success"
    assert row.ttft_ms is not None
    assert row.total_tokens == chunks[-1]["usage"]["total_tokens"]


async def test_a_stream_without_include_usage_carries_no_usage_chunk(personas):
    response = await post(
        personas.acme.plaintext_key, {"model": "echo", "messages": USER, "stream": True}
    )
    raw = b"".join([part async for part in response.streaming_content])
    chunks = [orjson.loads(line[6:]) for line in raw.split(b"\n\n") if line.startswith(b"data: {")]
    assert all(chunk["choices"] and "usage" not in chunk for chunk in chunks)
    [row] = await audit_rows()
    assert row.completion_tokens > 0  # the gateway still learned the usage


async def test_the_x_route_header_names_the_route(personas):
    response = await post(
        personas.acme.plaintext_key, {"messages": USER}, **{"x-route": "acme-private"}
    )
    assert response.status_code == 200
    assert response["x-gateway-route"] == "acme-private"


@pytest.mark.parametrize(
    ("key", "fragment"),
    [
        (None, "Missing API key"),
        ("sk-not-ours", "Incorrect API key"),
        ("gwk_" + "A" * 48, "Incorrect API key"),
    ],
)
async def test_it_refuses_missing_and_unknown_keys_with_401(personas, key, fragment):
    response = await post(key, {"model": "echo", "messages": USER})
    error = assert_envelope(response, 401, "invalid_request_error", "invalid_api_key")
    assert fragment in error["message"]
    [row] = await audit_rows()
    assert (row.outcome, row.status_code, row.tenant_id) == ("rejected", 401, None)


async def test_it_rejects_a_revoked_key(personas):
    await sync_to_async(api_key_revoke)(api_key=personas.acme.key)
    response = await post(personas.acme.plaintext_key, {"model": "echo", "messages": USER})
    error = assert_envelope(response, 401, "invalid_request_error", "invalid_api_key")
    assert "revoked" in error["message"]
    [row] = await audit_rows()
    assert row.key_prefix == personas.acme.key.prefix


async def test_it_rejects_an_expired_key(personas):
    issued = await sync_to_async(personas.acme.issue_key)(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = await post(issued.plaintext, {"model": "echo", "messages": USER})
    assert "expired" in assert_envelope(response, 401, "invalid_request_error")["message"]


async def test_it_refuses_a_suspended_tenant_with_403(personas):
    acme = personas.acme.tenant
    acme.status = Tenant.Status.SUSPENDED
    await sync_to_async(acme.save)()
    response = await post(personas.acme.plaintext_key, {"model": "echo", "messages": USER})
    assert_envelope(response, 403, "permission_error", "tenant_suspended")


async def test_an_x_tenant_id_header_must_match_the_key(personas):
    ok = await post(
        personas.acme.plaintext_key, {"model": "echo", "messages": USER}, **{"x-tenant-id": "acme"}
    )
    assert ok.status_code == 200
    response = await post(
        personas.acme.plaintext_key,
        {"model": "echo", "messages": USER},
        **{"x-tenant-id": "globex"},
    )
    assert_envelope(response, 403, "permission_error", "tenant_mismatch")


async def test_a_key_outside_its_allow_list_gets_403(personas):
    issued = await sync_to_async(personas.acme.issue_key)(allowed_routes=["acme-private"])
    assert (
        await post(issued.plaintext, {"model": "acme-private", "messages": USER})
    ).status_code == 200
    response = await post(issued.plaintext, {"model": "echo", "messages": USER})
    assert_envelope(response, 403, "permission_error", "model_not_allowed")


async def test_another_tenants_key_never_reaches_a_private_route(personas):
    response = await post(
        personas.globex.plaintext_key, {"model": "acme-private", "messages": USER}
    )
    error = assert_envelope(response, 404, "invalid_request_error", "model_not_found")
    assert error["param"] == "model"
    [row] = await audit_rows()
    assert (row.tenant_id, row.outcome, row.provider) == (personas.globex.tenant.id, "rejected", "")


async def test_an_unknown_model_is_404(personas):
    response = await post(personas.acme.plaintext_key, {"model": "nope", "messages": USER})
    assert_envelope(response, 404, "invalid_request_error", "model_not_found")


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b"", "empty"),
        (orjson.dumps({"model": "echo"}), "'messages'"),
        (orjson.dumps({"model": "echo", "messages": USER, "max_tokens": "9"}), "max_tokens"),
    ],
)
async def test_bad_input_is_a_400_in_the_envelope_and_audited(personas, body, fragment):
    response = await post(personas.acme.plaintext_key, body)
    assert fragment in assert_envelope(response, 400, "invalid_request_error")["message"]
    [row] = await audit_rows()
    assert (row.outcome, row.status_code, row.tenant_id) == (
        "rejected",
        400,
        personas.acme.tenant.id,
    )


async def test_a_body_over_the_limit_is_413(personas, settings):
    settings.GATEWAY_MAX_BODY_BYTES = 1000
    response = await post(
        personas.acme.plaintext_key,
        {"model": "echo", "messages": [{"role": "user", "content": "x" * 2000}]},
    )
    assert_envelope(response, 413, "invalid_request_error", "payload_too_large")


async def test_it_refuses_120000_content_parts_by_default_with_a_400_envelope(personas):
    """3.7 MB of tiny parts: under the body limit, refused by the default parts limit, and
    audited without the prompt it could not accept."""
    parts = [{"type": "text", "text": "hello!"}] * 120_000
    body = orjson.dumps({"model": "echo", "messages": [{"role": "user", "content": parts}]})
    assert 3_500_000 < len(body) < 4 * 1024 * 1024
    response = await post(personas.acme.plaintext_key, body)
    error = assert_envelope(response, 400, "invalid_request_error", "too_many_content_parts")
    assert error["param"] == "messages"
    [row] = await audit_rows()
    assert (row.outcome, row.status_code, row.prompt) == ("rejected", 400, [])


async def test_models_lists_only_what_the_key_may_use(personas):
    client = AsyncClient()
    acme = await client.get(
        "/v1/models", headers={"authorization": f"Bearer {personas.acme.plaintext_key}"}
    )
    globex = await client.get(
        "/v1/models", headers={"authorization": f"Bearer {personas.globex.plaintext_key}"}
    )
    assert {m["id"] for m in orjson.loads(acme.content)["data"]} == {"echo", "acme-private"}
    assert {m["id"] for m in orjson.loads(globex.content)["data"]} == {"echo", "globex-private"}
    limited = await sync_to_async(personas.acme.issue_key)(allowed_routes=["echo"])
    only = await client.get("/v1/models", headers={"authorization": f"Bearer {limited.plaintext}"})
    assert [m["id"] for m in orjson.loads(only.content)["data"]] == ["echo"]


async def test_models_without_a_key_is_401(personas):
    response = await AsyncClient().get("/v1/models")
    assert_envelope(response, 401, "invalid_request_error", "invalid_api_key")


async def test_an_unknown_path_is_a_404_envelope(personas):
    response = await AsyncClient().get("/v1/nothing-here")
    assert_envelope(response, 404, "invalid_request_error")


async def test_a_warm_request_makes_no_database_query(personas):
    key = personas.acme.plaintext_key
    assert (await post(key, {"model": "echo", "messages": USER})).status_code == 200  # warms up
    with count_queries_everywhere() as counter:
        for _ in range(5):
            response = await post(key, {"model": "echo", "messages": USER})
            assert response.status_code == 200
        stream = await post(key, {"model": "echo", "messages": USER, "stream": True})
        _ = [part async for part in stream.streaming_content]
        models = await AsyncClient().get("/v1/models", headers={"authorization": f"Bearer {key}"})
        assert models.status_code == 200
    assert counter.queries == []
    # ...and the rows were queued, not lost: writing them is the writer's job.
    assert len(await audit_rows()) == 8


async def test_a_change_made_by_another_process_reaches_the_snapshot(personas, settings):
    """Another process's write shows up only as a moved generation counter: no signal here."""
    from gateway_project.lib import generation
    from tenants.models import ApiKey

    settings.GATEWAY_SNAPSHOT_CHECK_SECONDS = 0
    acme = personas.acme
    assert (await post(acme.plaintext_key, {"model": "echo", "messages": USER})).status_code == 200
    await sync_to_async(
        lambda: ApiKey.objects.filter(pk=acme.key.pk).update(revoked_at=timezone.now())
    )()
    # Still served from the warm snapshot: nothing told this process yet.
    assert (await post(acme.plaintext_key, {"model": "echo", "messages": USER})).status_code == 200
    await sync_to_async(generation.bump)()
    assert (await post(acme.plaintext_key, {"model": "echo", "messages": USER})).status_code == 401
