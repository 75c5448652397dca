"""`POST /v1/responses` in-process (ASGI handler, real database, the fake OpenAI server over
real HTTP): pass-through and translation, plain and streamed, the audit row and ledger
line, limits, and the errors."""

from __future__ import annotations

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient

from billing.models import RateLimit, UsageLine
from tests import factories
from tests.conftest import assert_envelope
from tests.routing.proxy.test_handler import audit_rows

pytestmark = pytest.mark.django_db(transaction=True)


async def post(key: str | None, body: dict):
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return await AsyncClient().post(
        "/v1/responses", data=orjson.dumps(body), content_type="application/json", headers=headers
    )


async def events_of(response) -> list[tuple[str, dict]]:
    raw = b"".join([part async for part in response.streaming_content])
    events = []
    for block in raw.split(b"\n\n"):
        lines = dict(line.split(b": ", 1) for line in block.split(b"\n") if b": " in line)
        if b"data" in lines:
            events.append((lines[b"event"].decode(), orjson.loads(lines[b"data"])))
    return events


async def test_the_stub_route_answers_a_string_input_as_a_response_object(personas):
    response = await post(personas.acme.plaintext_key, {"model": "echo", "input": "hi there"})
    assert response.status_code == 200, response.content
    body = orjson.loads(response.content)
    assert (body["object"], body["status"]) == ("response", "completed")
    [message] = body["output"]
    assert message["content"][0]["text"] == "[stub:echo] hi there"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    [row] = await audit_rows()
    assert row.metadata["endpoint"] == "responses"
    assert (row.prompt_tokens, row.completion_tokens) == (
        usage["input_tokens"],
        usage["output_tokens"],
    )
    assert row.prompt == [{"role": "user", "content": "hi there"}]
    assert row.response == "[stub:echo] hi there"


async def test_the_stub_route_streams_the_responses_event_sequence(personas):
    body = {"model": "echo", "input": "one two three", "instructions": "Be brief.", "stream": True}
    response = await post(personas.acme.plaintext_key, body)
    assert response.status_code == 200
    assert response["content-type"] == "text/event-stream"
    events = await events_of(response)
    names = [name for name, _ in events]
    assert names[:4] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert names[-4:] == [
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [data["sequence_number"] for _, data in events] == list(range(len(events)))
    text = "".join(d["delta"] for n, d in events if n == "response.output_text.delta")
    final = events[-1][1]["response"]
    assert text == final["output"][0]["content"][0]["text"] == "[stub:echo] one two three"
    assert final["instructions"] == "Be brief."
    [row] = await audit_rows()
    assert row.stream and row.outcome == "success"
    assert row.completion_tokens == final["usage"]["output_tokens"] > 0


async def test_function_tools_are_translated_both_ways(personas):
    tool = {
        "type": "function",
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
    key = personas.acme.plaintext_key
    first = orjson.loads(
        (await post(key, {"model": "echo", "input": "Paris?", "tools": [tool]})).content
    )
    [call] = first["output"]
    assert (call["type"], call["name"], orjson.loads(call["arguments"])) == (
        "function_call",
        "get_weather",
        {"city": "stub"},
    )
    follow_up = {
        "model": "echo",
        "tools": [tool],
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "Paris?"}]},
            call,
            {"type": "function_call_output", "call_id": call["call_id"], "output": "sunny"},
        ],
    }
    answer = orjson.loads((await post(key, follow_up)).content)
    assert answer["output"][0]["type"] == "message"
    streamed = await events_of(await post(key, {**follow_up, "input": "Rome?", "stream": True}))
    names = [name for name, _ in streamed]
    assert "response.function_call_arguments.delta" in names
    assert streamed[-1][1]["response"]["output"][0]["name"] == "get_weather"


async def test_a_capped_stub_answer_is_incomplete(personas):
    body = {"model": "echo", "input": "a long " * 20, "max_output_tokens": 3}
    answer = orjson.loads((await post(personas.acme.plaintext_key, body)).content)
    assert answer["status"] == "incomplete"
    assert answer["incomplete_details"] == {"reason": "max_output_tokens"}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"input": "hi", "previous_response_id": "resp_1"}, "'previous_response_id'"),
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "tools of type 'web_search'"),
        ({"input": [{"type": "reasoning", "summary": []}]}, "input items of type 'reasoning'"),
    ],
)
async def test_what_cannot_be_translated_is_a_clear_400_on_a_stub_route(personas, body, named):
    response = await post(personas.acme.plaintext_key, {"model": "echo", **body})
    assert_envelope(response, 400, "invalid_request_error")
    assert named in orjson.loads(response.content)["error"]["message"]


@pytest.mark.parametrize(
    "body",
    [
        {"model": "echo"},
        {"model": "echo", "input": 3},
        {"model": "echo", "input": "hi", "max_output_tokens": 0},
        {"model": "echo", "input": "hi", "base_url": "http://evil"},
    ],
)
async def test_malformed_requests_are_refused_in_the_envelope(personas, body):
    assert_envelope(await post(personas.acme.plaintext_key, body), 400, "invalid_request_error")


async def test_a_bad_key_is_a_401_in_the_envelope(personas):
    response = await post("gwk_wrong", {"model": "echo", "input": "hi"})
    assert_envelope(response, 401, "invalid_request_error")


async def test_openai_targets_get_the_request_as_it_is(personas, gpt, fake_openai):
    body = {"model": "gpt", "input": "hi", "store": True, "reasoning": {"effort": "low"}}
    response = await post(personas.acme.plaintext_key, body)
    assert response.status_code == 200, response.content
    sent = fake_openai.last
    assert sent.path == "/v1/responses"
    assert sent.body == {**body, "model": "ok", "stream": False}
    assert orjson.loads(response.content)["id"] == "resp_fake"


async def test_a_passthrough_stream_is_forwarded_event_for_event(personas, gpt, fake_openai):
    body = {"model": "gpt", "input": "hi", "stream": True}
    events = await events_of(await post(personas.acme.plaintext_key, body))
    assert [d["sequence_number"] for _, d in events] == list(range(len(events)))
    assert all(name == data["type"] for name, data in events)
    assert events[-1][0] == "response.completed"
    [row] = await audit_rows()
    assert (row.prompt_tokens, row.completion_tokens, row.outcome) == (11, 7, "success")
    assert row.response == "fake-openai says: hi"


async def test_stateful_requests_pass_through_to_openai_targets(personas, gpt, fake_openai):
    body = {"model": "gpt", "input": "and then?", "previous_response_id": "resp_1"}
    response = await post(personas.acme.plaintext_key, body)
    assert response.status_code == 200
    assert fake_openai.last.body["previous_response_id"] == "resp_1"


async def test_served_responses_have_ledger_lines_like_their_audit_rows(personas):
    key = personas.acme.plaintext_key
    served = [
        await post(key, {"model": "echo", "input": "hi", "stream": stream})
        for stream in (False, True)
    ]
    _ = [part async for part in served[1].streaming_content]
    rows = await audit_rows()
    lines = await sync_to_async(
        lambda: {line.request_id: line for line in UsageLine.objects.all()}
    )()
    assert set(lines) == {response["x-request-id"] for response in served}
    for audit in rows:
        line = lines[audit.request_id]
        assert (line.cost_usd, line.total_tokens) == (audit.cost_usd, audit.total_tokens) != (0, 0)


async def test_responses_count_against_rate_limits(personas):
    await sync_to_async(RateLimit.objects.create)(scope="key", api_key=personas.acme.key, rpm=2)
    key = personas.acme.plaintext_key
    statuses = [(await post(key, {"model": "echo", "input": "hi"})).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]


async def test_a_failure_before_the_first_event_falls_back(personas, fake_openai):
    provider = await sync_to_async(factories.make_provider)(
        "fake-openai", kind="openai", base_url=fake_openai.openai_base_url, max_retries=0
    )
    models = [
        await sync_to_async(factories.make_model)(provider, name)
        for name in ("error-at-start", "ok")
    ]
    await sync_to_async(factories.make_route)("pair", *models, tenant=personas.acme.tenant)
    body = {"model": "pair", "input": "hi", "stream": True}
    response = await post(personas.acme.plaintext_key, body)
    events = await events_of(response)
    assert events[-1][0] == "response.completed"
    assert response["x-gateway-fallback"] == "true"
    assert "error" not in [name for name, _ in events]
