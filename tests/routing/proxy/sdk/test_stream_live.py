"""The official openai SDK streaming: text with usage, streamed tool calls, failures
after the first byte; against a real gateway process, with fake OpenAI and
Anthropic upstreams that speak the real wire formats. Nothing here is mocked."""

from __future__ import annotations

import openai
import pytest

from tests import factories
from tests.routing.proxy.sdk.support import HELLO, WEATHER_TOOL, audit_row

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("route", ["gpt", "claude"])
def test_the_sdk_streams_with_usage(sdk, route):
    stream = sdk.chat.completions.create(
        model=route, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "says: Say hello" in text
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


async def test_the_async_sdk_streams(async_sdk):
    stream = await async_sdk.chat.completions.create(model="claude", messages=HELLO, stream=True)
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "says: Say hello" in text


@pytest.mark.parametrize("route", ["gpt-tools", "claude-tools"])
def test_streamed_tool_calls_reassemble_in_the_sdk(sdk, route):
    stream = sdk.chat.completions.create(
        model=route,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[WEATHER_TOOL],
        stream=True,
    )
    name, arguments = "", ""
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or ():
                name += call.function.name or ""
                arguments += call.function.arguments or ""
    assert name == "get_weather"
    assert arguments.startswith("{")


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("fake-openai", "midstream-drop"),
        ("fake-openai", "error-after-200"),
        ("fake-anthropic", "midstream-drop"),
        ("fake-anthropic", "error-after-200"),
    ],
)
def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error(
    personas, models, sdk, provider, model
):
    factories.make_route(
        "flaky",
        models[(provider, model)],
        models[("fake-openai", "ok")],
        tenant=personas.acme.tenant,
    )
    with sdk.chat.completions.with_streaming_response.create(
        model="flaky", messages=HELLO, stream=True
    ) as raw:
        request_id = raw.headers["x-request-id"]
        with pytest.raises(openai.APIError):
            for _ in raw.parse():
                pass
    row = audit_row(request_id)
    assert (row.outcome, row.attempts, row.provider) == ("upstream_error", 1, provider)
