"""The official openai SDK: completions, tool calls, errors, revocation, redaction,
tags and clients that hang up; against a real gateway process, with fake OpenAI and
Anthropic upstreams that speak the real wire formats. Nothing here is mocked."""

from __future__ import annotations

import time

import openai
import pytest

from audit.models import AuditEvent
from tenants.services import api_key_revoke
from tests import factories
from tests.routing.proxy.sdk.support import HELLO, WEATHER_TOOL, audit_row

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_sync_sdk_gets_a_completion_from_an_openai_upstream(sdk, fake_openai):
    raw = sdk.chat.completions.with_raw_response.create(model="gpt", messages=HELLO)
    completion = raw.parse()
    assert completion.choices[0].message.content == "fake-openai says: Say hello"
    assert completion.usage.prompt_tokens == 11 and completion.usage.completion_tokens == 7
    request_id = raw.headers["x-request-id"]
    row = audit_row(request_id)
    assert (row.outcome, row.provider, row.model, row.attempts) == (
        "success",
        "fake-openai",
        "ok",
        1,
    )
    assert row.prompt_tokens == 11 and row.completion_tokens == 7
    sent = fake_openai.requests[-1]
    assert sent.body["model"] == "ok" and sent.body["messages"] == HELLO


async def test_the_async_sdk_gets_a_completion(async_sdk):
    completion = await async_sdk.chat.completions.create(model="claude", messages=HELLO)
    assert completion.choices[0].message.content.startswith("fake-anthropic says: Say hello")
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("route", ["gpt-tools", "claude-tools"])
def test_tool_calls_round_trip_through_the_sdk(sdk, route):
    first = sdk.chat.completions.create(
        model=route,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    call = message.tool_calls[0]
    assert call.function.name == "get_weather"
    follow_up = sdk.chat.completions.create(
        model=route,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        ],
    )
    assert follow_up.choices[0].message.content


def test_a_revoked_key_is_refused_by_the_server_process_within_a_second(personas, sdk):
    assert sdk.chat.completions.create(model="gpt", messages=HELLO)
    api_key_revoke(api_key=personas.acme.key)
    time.sleep(1.0)
    with pytest.raises(openai.AuthenticationError):
        sdk.chat.completions.create(model="gpt", messages=HELLO)


def test_a_tool_call_with_arguments_that_are_not_json_is_a_400_for_anthropic(sdk):
    messages = [
        {"role": "user", "content": "Weather?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{not json"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="claude-tools", messages=messages, tools=[WEATHER_TOOL])
    assert "arguments" in (caught.value.body.get("param") or "")


def test_the_demo_stub_route_needs_no_provider_at_all(personas, sdk, gateway):
    factories.make_route("demo", personas.model)  # the stub's echo
    completion = sdk.chat.completions.create(model="demo", messages=HELLO)
    assert completion.choices[0].message.content.startswith("[stub:echo]")
    streamed = sdk.chat.completions.create(model="demo", messages=HELLO, stream=True)
    assert "Say hello" in "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)


def test_redaction_masks_the_audit_copy_and_only_opted_in_rules_reach_upstream(sdk, fake_openai):
    from audit.services import redaction_rule_upsert

    redaction_rule_upsert(name="e-mail", detector="email", replacement="[EMAIL]")
    redaction_rule_upsert(
        name="card", detector="credit_card", replacement="[CARD]", scope="audit_and_upstream"
    )
    time.sleep(0.1)
    text = "Reset mario.rossi@example.com, card 4111 1111 1111 1111"
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt", messages=[{"role": "user", "content": text}]
    )
    answer = raw.parse().choices[0].message.content
    sent = fake_openai.requests[-1].body["messages"][0]["content"]
    assert sent == "Reset mario.rossi@example.com, card [CARD]"  # the model still gets the e-mail
    assert "mario.rossi@example.com" in answer  # and the client gets its answer unchanged
    row = audit_row(raw.headers["x-request-id"])
    assert row.prompt == [{"role": "user", "content": "Reset [EMAIL], card [CARD]"}]
    assert "mario.rossi" not in row.response and "[EMAIL]" in row.response


def test_a_client_hanging_up_before_the_answer_leaves_a_cancelled_row(personas, gateway):
    import httpx

    slow = factories.make_provider("slow-stub", kind="stub", stub_delay_ms=3000)
    factories.make_route(
        "sluggish", factories.make_model(slow, "echo"), tenant=personas.acme.tenant
    )
    before = set(AuditEvent.objects.values_list("request_id", flat=True))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {personas.acme.plaintext_key}"},
            json={"model": "sluggish", "messages": HELLO},
            timeout=httpx.Timeout(0.5),
        )
    deadline = time.monotonic() + 5
    while True:
        rows = AuditEvent.objects.exclude(request_id__in=before).filter(route="sluggish")
        if rows:
            break
        assert time.monotonic() < deadline, "no audit row for the abandoned request"
        time.sleep(0.05)
    [row] = rows
    assert row.outcome == "cancelled" and row.status_code == 499
    assert row.latency_ms < 2500  # recorded when the client left, not when the stub answered


def test_tags_from_the_gateway_extension_land_on_the_audit_row(sdk):
    raw = sdk.chat.completions.with_raw_response.create(
        model="gpt",
        messages=HELLO,
        extra_body={"x-gateway": {"metadata": {"feature": "chat", "user_id": "u_123"}}},
    )
    row = audit_row(raw.headers["x-request-id"])
    assert row.metadata["tags"] == {"feature": "chat", "user_id": "u_123"}
