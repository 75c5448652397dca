"""The official anthropic SDK against `/v1/messages` of a real gateway process: plain,
streamed, tool use, count_tokens and errors, with the fake OpenAI upstream (routes `gpt`,
`gpt-tools`) and the fake Anthropic upstream (`claude`, `claude-tools`). Nothing mocked."""

from __future__ import annotations

import anthropic
import pytest

from tests.fakes.upstreams import ANTHROPIC_GREETING, OPENAI_GREETING, TOOL_INPUT
from tests.personas import Personas
from tests.routing.proxy.sdk.support import Models, audit_row

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = [{"role": "user", "content": "Say hello"}]
WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
}
GREETINGS = {"gpt": OPENAI_GREETING, "claude": ANTHROPIC_GREETING}


@pytest.fixture
def client(personas: Personas, models: Models, gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.base_url, api_key=personas.acme.plaintext_key, max_retries=0
    )


@pytest.mark.parametrize("route", ["gpt", "claude"])
def test_the_sdk_gets_a_message(client, route):
    raw = client.messages.with_raw_response.create(
        model=route, max_tokens=100, system="Be brief.", messages=HELLO
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text.startswith(f"{GREETINGS[route]} Say hello")
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 7
    row = audit_row(raw.headers["x-request-id"])
    assert (row.outcome, row.route, row.metadata["endpoint"]) == ("success", route, "messages")
    assert row.completion_tokens == 7
    assert row.prompt[0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize("route", ["gpt", "claude"])
def test_a_streamed_message_reassembles_to_the_plain_one(client, route):
    plain = client.messages.create(model=route, max_tokens=100, messages=HELLO)
    with client.messages.stream(model=route, max_tokens=100, messages=HELLO) as stream:
        text = "".join(stream.text_stream)
        streamed = stream.get_final_message()
    assert text == plain.content[0].text
    assert [(b.type, b.text) for b in streamed.content] == [(b.type, b.text) for b in plain.content]
    assert streamed.stop_reason == plain.stop_reason == "end_turn"
    assert streamed.usage.output_tokens == plain.usage.output_tokens
    assert streamed.usage.input_tokens == plain.usage.input_tokens


@pytest.mark.parametrize("route", ["gpt-tools", "claude-tools"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "streamed"])
def test_tool_use_round_trips(client, route, stream):
    question = [{"role": "user", "content": "Weather in Paris?"}]
    if stream:
        with client.messages.stream(
            model=route, max_tokens=100, messages=question, tools=[WEATHER]
        ) as events:
            first = events.get_final_message()
    else:
        first = client.messages.create(
            model=route, max_tokens=100, messages=question, tools=[WEATHER]
        )
    assert first.stop_reason == "tool_use"
    [call] = [block for block in first.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.input == TOOL_INPUT
    follow_up = client.messages.create(
        model=route,
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            *question,
            {
                "role": "assistant",
                "content": [b.model_dump(exclude_none=True) for b in first.content],
            },
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "Sunny"}],
            },
        ],
    )
    assert follow_up.stop_reason == "end_turn"
    assert "Sunny" in follow_up.content[0].text


@pytest.mark.parametrize("route", ["gpt", "claude", "no-such-route"])
def test_a_bad_key_is_an_authentication_error_whatever_the_route(gateway, models, route):
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key="gw-nope", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client.messages.create(model=route, max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 401
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "authentication_error"


def test_an_unknown_model_is_not_found(client):
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-route", max_tokens=10, messages=HELLO)
    assert caught.value.body["error"]["type"] == "not_found_error"


def test_a_request_without_a_valid_max_tokens_is_invalid(client):
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="gpt", max_tokens=0, messages=HELLO)
    assert caught.value.body["error"]["type"] == "invalid_request_error"


def test_an_upstream_failure_is_an_api_error(client, models):
    from tests import factories

    factories.make_route(
        "broken", models[("fake-openai", "fail-500")], tenant=client_tenant(models)
    )
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(model="broken", max_tokens=10, messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.body["error"]["type"] == "api_error"


def client_tenant(models: Models):
    from routing.models import Route

    return Route.objects.get(name="gpt").tenant


@pytest.mark.parametrize("route", ["gpt", "claude"])
def test_count_tokens_is_answered_by_the_gateway(client, fake_openai, fake_anthropic, route):
    sent = len(fake_openai.requests) + len(fake_anthropic.requests)
    counted = client.messages.count_tokens(model=route, messages=HELLO, tools=[WEATHER])
    assert counted.input_tokens > 0
    assert len(fake_openai.requests) + len(fake_anthropic.requests) == sent
