"""The official openai SDK's `client.responses.create`, plain and streamed, against a real
gateway process: passed through to the fake OpenAI server's /responses, and translated for
the stub route and an Anthropic upstream. Nothing here is mocked."""

from __future__ import annotations

import openai
import pytest

from billing.models import UsageLine
from tests import factories
from tests.fakes.openai_responses import CACHED_TOKENS, REASONING_TOKENS
from tests.routing.proxy.sdk.support import audit_row

pytestmark = pytest.mark.django_db(transaction=True)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
def scripted(personas, models, fake_openai):
    """acme's routes `gpt-<name>` to the fake OpenAI server's Responses behaviours."""
    provider = models[("fake-openai", "ok")].provider
    for name in ("incomplete", "failed", "cached"):
        factories.make_route(
            f"gpt-{name}", factories.make_model(provider, name), tenant=personas.acme.tenant
        )


def ledger_line(request_id: str) -> UsageLine:
    audit_row(request_id)  # the line is written with the row
    return UsageLine.objects.get(request_id=request_id)


def test_a_response_from_an_openai_upstream(sdk, fake_openai):
    raw = sdk.responses.with_raw_response.create(model="gpt", input="Say hello", store=True)
    response = raw.parse()
    assert response.output_text == "fake-openai says: Say hello"
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 7)
    assert fake_openai.last.path == "/v1/responses"
    assert fake_openai.last.body["store"] is True
    row = audit_row(raw.headers["x-request-id"])
    assert (row.outcome, row.provider, row.metadata["endpoint"]) == (
        "success",
        "fake-openai",
        "responses",
    )
    assert row.prompt == [{"role": "user", "content": "Say hello"}]
    assert row.response == "fake-openai says: Say hello"


def test_a_streamed_response_from_an_openai_upstream(sdk):
    events = list(sdk.responses.create(model="gpt", input="Say hello", stream=True))
    kinds = [event.type for event in events]
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text == "fake-openai says: Say hello"


def test_the_sdks_stream_helper_assembles_the_response(sdk):
    with sdk.responses.stream(model="gpt", input="Say hello") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.output_text == "fake-openai says: Say hello"


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_usage_details_reach_the_audit_row_and_the_ledger(sdk, scripted, stream):
    raw = sdk.responses.with_raw_response.create(model="gpt-cached", input="hi", stream=stream)
    if stream:
        _ = list(raw.parse())
    line = ledger_line(raw.headers["x-request-id"])
    row = audit_row(raw.headers["x-request-id"])
    assert (row.prompt_tokens, row.completion_tokens) == (11, 7)
    assert (row.cached_tokens, row.reasoning_tokens) == (CACHED_TOKENS, REASONING_TOKENS)
    assert (line.cached_tokens, line.reasoning_tokens, line.total_tokens) == (
        CACHED_TOKENS,
        REASONING_TOKENS,
        18,
    )
    assert line.cost_usd == row.cost_usd > 0


def test_an_incomplete_response_is_passed_on(sdk, scripted):
    response = sdk.responses.create(model="gpt-incomplete", input="hi", max_output_tokens=3)
    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    events = list(sdk.responses.create(model="gpt-incomplete", input="hi", stream=True))
    assert events[-1].type == "response.incomplete"


def test_a_failed_response_is_passed_on_and_audited_as_a_failure(sdk, scripted):
    raw = sdk.responses.with_raw_response.create(model="gpt-failed", input="hi")
    assert raw.parse().status == "failed"
    row = audit_row(raw.headers["x-request-id"])
    assert (row.outcome, row.error_type) == ("upstream_error", "server_error")
    events = list(sdk.responses.create(model="gpt-failed", input="hi", stream=True))
    assert events[-1].type == "response.failed"
    assert events[-1].response.error.message == "fake response failure"


def test_a_failure_mid_stream_raises_in_the_sdk(sdk, personas, models):
    broken = models[("fake-openai", "error-after-200")]
    factories.make_route("gpt-broken", broken, tenant=personas.acme.tenant)
    with pytest.raises(openai.APIError, match="fake failure mid-stream"):
        _ = list(sdk.responses.create(model="gpt-broken", input="hi", stream=True))


@pytest.mark.parametrize("route", ["echo", "claude"])
def test_routes_without_the_responses_api_translate_text(sdk, route):
    response = sdk.responses.create(model=route, input="Say hello", instructions="Be kind.")
    assert response.status == "completed"
    assert "Say hello" in response.output_text
    events = list(sdk.responses.create(model=route, input="Say hello", stream=True))
    assert events[-1].type == "response.completed"
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == events[-1].response.output_text == response.output_text


@pytest.mark.parametrize("route", ["echo", "claude-tools"])
def test_function_tools_round_trip_through_translation(sdk, route):
    first = sdk.responses.create(model=route, input="Weather in Paris?", tools=[WEATHER])
    [call] = [item for item in first.output if item.type == "function_call"][:1]
    assert call.name == "get_weather"
    follow_up = sdk.responses.create(
        model=route,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
        ],
    )
    assert follow_up.output_text


async def test_the_async_sdk_streams_from_the_stub(async_sdk):
    stream = await async_sdk.responses.create(model="echo", input="hi", stream=True)
    kinds = [event.type async for event in stream]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"


def test_a_bad_key_is_a_401(gateway, personas):
    client = openai.OpenAI(base_url=f"{gateway.base_url}/v1", api_key="gwk_wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as raised:
        client.responses.create(model="echo", input="hi")
    assert raised.value.status_code == 401
    assert raised.value.body["code"] == "invalid_api_key"
