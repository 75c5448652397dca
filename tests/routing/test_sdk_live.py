"""The official openai SDK against a real gateway process, with fake OpenAI and Anthropic
upstreams that speak the real wire formats. Nothing here is mocked."""

from __future__ import annotations

import time

import openai
import pytest

from audit.models import AuditEvent
from providers.models import Provider
from routing.models import Route
from tenants.services import api_key_revoke
from tests import factories
from tests.fakes.upstreams import refused_base_url

pytestmark = pytest.mark.django_db(transaction=True)

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
HELLO = [{"role": "user", "content": "Say hello"}]


@pytest.fixture(autouse=True)
def _drain_the_server(gateway):
    yield
    gateway.drain()


@pytest.fixture
def world(transactional_db, gateway, fake_openai, fake_anthropic):
    acme = factories.make_tenant("acme")
    # No retries here: these tests are about fallback; retries have their own tests.
    openai_fake = factories.make_provider(
        "fake-openai",
        kind="openai",
        base_url=fake_openai.openai_base_url,
        timeout_s=2,
        connect_timeout_s=1,
        max_retries=0,
    )
    anthropic_fake = factories.make_provider(
        "fake-anthropic",
        kind="anthropic",
        base_url=fake_anthropic.anthropic_base_url,
        timeout_s=2,
        connect_timeout_s=1,
        max_retries=0,
    )
    models = {}
    for provider in (openai_fake, anthropic_fake):
        for name in (
            "ok",
            "tools",
            "fail-500",
            "fail-502",
            "fail-503",
            "fail-529",
            "fail-429",
            "fail-400",
            "stall",
            "midstream-drop",
            "error-after-200",
        ):
            models[(provider.name, name)] = factories.make_model(provider, name)
    refused = factories.make_provider(
        "refused", kind="openai", base_url=refused_base_url(), connect_timeout_s=1, max_retries=0
    )
    models[("refused", "ok")] = factories.make_model(refused, "ok")
    factories.make_route("gpt", models[("fake-openai", "ok")], tenant=acme)
    factories.make_route("gpt-tools", models[("fake-openai", "tools")], tenant=acme)
    factories.make_route("claude", models[("fake-anthropic", "ok")], tenant=acme)
    factories.make_route("claude-tools", models[("fake-anthropic", "tools")], tenant=acme)
    issued = factories.make_key(acme)
    return {
        "acme": acme,
        "key": issued,
        "models": models,
        "client": openai.OpenAI(
            base_url=f"{gateway.base_url}/v1", api_key=issued.plaintext, max_retries=0
        ),
        "async_client": openai.AsyncOpenAI(
            base_url=f"{gateway.base_url}/v1", api_key=issued.plaintext, max_retries=0
        ),
    }


def audit_row(request_id: str, timeout: float = 5.0) -> AuditEvent:
    """The server writes rows off the response path; give its writer a moment."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = AuditEvent.objects.filter(request_id=request_id).first()
        if row is not None:
            return row
        time.sleep(0.05)
    raise AssertionError(f"no audit row for {request_id}")


def test_the_sync_sdk_gets_a_completion_from_an_openai_upstream(world, fake_openai):
    raw = world["client"].chat.completions.with_raw_response.create(model="gpt", messages=HELLO)
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


async def test_the_async_sdk_gets_a_completion(world):
    completion = await world["async_client"].chat.completions.create(model="claude", messages=HELLO)
    assert completion.choices[0].message.content.startswith("fake-anthropic says: Say hello")
    assert completion.choices[0].finish_reason == "stop"


@pytest.mark.parametrize("route", ["gpt", "claude"])
def test_the_sdk_streams_with_usage(world, route):
    stream = world["client"].chat.completions.create(
        model=route, messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "says: Say hello" in text
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens > 0
    assert len({c.id for c in chunks}) == 1
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"


async def test_the_async_sdk_streams(world):
    stream = await world["async_client"].chat.completions.create(
        model="claude", messages=HELLO, stream=True
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert "says: Say hello" in text


@pytest.mark.parametrize("route", ["gpt-tools", "claude-tools"])
def test_tool_calls_round_trip_through_the_sdk(world, route):
    first = world["client"].chat.completions.create(
        model=route,
        messages=[{"role": "user", "content": "Weather in Paris?"}],
        tools=[WEATHER_TOOL],
    )
    message = first.choices[0].message
    assert first.choices[0].finish_reason == "tool_calls"
    call = message.tool_calls[0]
    assert call.function.name == "get_weather"
    follow_up = world["client"].chat.completions.create(
        model=route,
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Paris?"},
            message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21C"},
        ],
    )
    assert follow_up.choices[0].message.content


@pytest.mark.parametrize("route", ["gpt-tools", "claude-tools"])
def test_streamed_tool_calls_reassemble_in_the_sdk(world, route):
    stream = world["client"].chat.completions.create(
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


FAILURES = [
    ("refused", "ok", "connect_error"),
    ("fake-openai", "stall", "timeout"),
    ("fake-openai", "fail-429", "rate_limited"),
    ("fake-openai", "fail-500", "server_error"),
    ("fake-openai", "fail-502", "server_error"),
    ("fake-openai", "fail-503", "server_error"),
    ("fake-anthropic", "fail-529", "server_error"),
]


@pytest.mark.parametrize(("provider", "model", "kind"), FAILURES)
@pytest.mark.parametrize("stream", [False, True])
def test_it_falls_back_to_the_next_target(world, provider, model, kind, stream):
    factories.make_route(
        "resilient",
        world["models"][(provider, model)],
        world["models"][("fake-anthropic", "ok")],
        tenant=world["acme"],
    )
    if stream:
        with world["client"].chat.completions.with_streaming_response.create(
            model="resilient", messages=HELLO, stream=True
        ) as raw:
            headers = raw.headers
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        raw = world["client"].chat.completions.with_raw_response.create(
            model="resilient", messages=HELLO
        )
        headers = raw.headers
        text = raw.parse().choices[0].message.content
    assert text.startswith("fake-anthropic says")
    assert headers["x-gateway-fallback"] == "true"
    row = audit_row(headers["x-request-id"])
    assert (row.outcome, row.fallback_used, row.attempts, row.provider) == (
        "success",
        True,
        2,
        "fake-anthropic",
    )
    assert row.attempt_log[0]["kind"] == kind and row.attempt_log[0]["ok"] is False


def test_when_every_target_fails_the_sdk_gets_a_502_and_the_row_says_so(world):
    factories.make_route(
        "doomed",
        world["models"][("fake-openai", "fail-500")],
        world["models"][("fake-anthropic", "fail-503")],
        tenant=world["acme"],
    )
    with pytest.raises(openai.InternalServerError) as caught:
        world["client"].chat.completions.create(model="doomed", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_error"
    row = audit_row(caught.value.response.headers["x-request-id"])
    assert (row.outcome, row.status_code, row.attempts) == ("upstream_error", 502, 2)


def test_when_every_target_times_out_it_is_a_504(world):
    factories.make_route("slow", world["models"][("fake-openai", "stall")], tenant=world["acme"])
    with pytest.raises(openai.APIStatusError) as caught:
        world["client"].chat.completions.create(model="slow", messages=HELLO)
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "upstream_timeout"


def test_an_upstream_400_is_passed_back_without_fallback(world):
    factories.make_route(
        "strict",
        world["models"][("fake-openai", "fail-400")],
        world["models"][("fake-anthropic", "ok")],
        tenant=world["acme"],
    )
    with pytest.raises(openai.BadRequestError) as caught:
        world["client"].chat.completions.create(model="strict", messages=HELLO)
    row = audit_row(caught.value.response.headers["x-request-id"])
    assert row.attempts == 1 and row.status_code == 400


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("fake-openai", "midstream-drop"),
        ("fake-openai", "error-after-200"),
        ("fake-anthropic", "midstream-drop"),
        ("fake-anthropic", "error-after-200"),
    ],
)
def test_a_failure_after_the_first_byte_ends_the_stream_with_an_error(world, provider, model):
    factories.make_route(
        "flaky",
        world["models"][(provider, model)],
        world["models"][("fake-openai", "ok")],
        tenant=world["acme"],
    )
    with world["client"].chat.completions.with_streaming_response.create(
        model="flaky", messages=HELLO, stream=True
    ) as raw:
        request_id = raw.headers["x-request-id"]
        with pytest.raises(openai.APIError):
            for _ in raw.parse():
                pass
    row = audit_row(request_id)
    assert (row.outcome, row.attempts, row.provider) == ("upstream_error", 1, provider)


def test_a_revoked_key_is_refused_by_the_server_process_within_a_second(world):
    assert world["client"].chat.completions.create(model="gpt", messages=HELLO)
    api_key_revoke(api_key=world["key"].api_key)
    time.sleep(1.0)
    with pytest.raises(openai.AuthenticationError):
        world["client"].chat.completions.create(model="gpt", messages=HELLO)


def test_a_disabled_provider_is_skipped_by_the_server(world):
    factories.make_route(
        "two",
        world["models"][("fake-openai", "ok")],
        world["models"][("fake-anthropic", "ok")],
        tenant=world["acme"],
    )
    Provider.objects.filter(name="fake-openai").update(enabled=False)
    Provider.objects.get(name="fake-openai").save()  # through the write path: bumps the config
    time.sleep(0.2)
    completion = world["client"].chat.completions.create(model="two", messages=HELLO)
    assert completion.choices[0].message.content.startswith("fake-anthropic")


def test_a_tool_call_with_arguments_that_are_not_json_is_a_400_for_anthropic(world):
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
        world["client"].chat.completions.create(
            model="claude-tools", messages=messages, tools=[WEATHER_TOOL]
        )
    assert "arguments" in (caught.value.body.get("param") or "")


def test_the_demo_stub_route_needs_no_provider_at_all(world, gateway):
    local = factories.make_provider("local", kind="stub")
    factories.make_route("demo", factories.make_model(local, "echo"))
    completion = world["client"].chat.completions.create(model="demo", messages=HELLO)
    assert completion.choices[0].message.content.startswith("[stub:echo]")
    streamed = world["client"].chat.completions.create(model="demo", messages=HELLO, stream=True)
    assert "Say hello" in "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)


def test_redaction_masks_the_audit_copy_and_only_opted_in_rules_reach_upstream(world, fake_openai):
    from audit.services import redaction_rule_upsert

    redaction_rule_upsert(name="e-mail", detector="email", replacement="[EMAIL]")
    redaction_rule_upsert(
        name="card", detector="credit_card", replacement="[CARD]", scope="audit_and_upstream"
    )
    time.sleep(0.1)
    text = "Reset mario.rossi@example.com, card 4111 1111 1111 1111"
    raw = world["client"].chat.completions.with_raw_response.create(
        model="gpt", messages=[{"role": "user", "content": text}]
    )
    answer = raw.parse().choices[0].message.content
    sent = fake_openai.requests[-1].body["messages"][0]["content"]
    assert sent == "Reset mario.rossi@example.com, card [CARD]"  # the model still gets the e-mail
    assert "mario.rossi@example.com" in answer  # and the client gets its answer unchanged
    row = audit_row(raw.headers["x-request-id"])
    assert row.prompt == [{"role": "user", "content": "Reset [EMAIL], card [CARD]"}]
    assert "mario.rossi" not in row.response and "[EMAIL]" in row.response


def test_a_client_hanging_up_before_the_answer_leaves_a_cancelled_row(world, gateway):
    import httpx

    slow = factories.make_provider("slow-stub", kind="stub", stub_delay_ms=3000)
    factories.make_route("sluggish", factories.make_model(slow, "echo"), tenant=world["acme"])
    before = set(AuditEvent.objects.values_list("request_id", flat=True))
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            f"{gateway.base_url}/v1/chat/completions",
            headers={"authorization": f"Bearer {world['key'].plaintext}"},
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


@pytest.mark.parametrize(
    ("model", "kind"), [("fail-503", "server_error"), ("fail-429", "rate_limited")]
)
def test_a_retryable_failure_is_retried_on_the_same_target_before_failing_over(
    world, fake_openai, model, kind
):
    patient = factories.make_provider(
        "patient", kind="openai", base_url=fake_openai.openai_base_url, max_retries=2
    )
    factories.make_route(
        "retrying",
        factories.make_model(patient, model),
        world["models"][("fake-anthropic", "ok")],
        tenant=world["acme"],
    )
    raw = world["client"].chat.completions.with_raw_response.create(
        model="retrying", messages=HELLO
    )
    assert raw.parse().choices[0].message.content.startswith("fake-anthropic")
    row = audit_row(raw.headers["x-request-id"])
    assert [(a["provider"], a.get("kind")) for a in row.attempt_log] == [
        ("patient", kind),
        ("patient", kind),
        ("patient", kind),
        ("fake-anthropic", None),
    ]


def test_a_stall_is_not_retried_on_the_same_target(world, fake_openai):
    patient = factories.make_provider(
        "patient",
        kind="openai",
        base_url=fake_openai.openai_base_url,
        max_retries=2,
        timeout_s=1,
    )
    factories.make_route(
        "stalling",
        factories.make_model(patient, "stall"),
        world["models"][("fake-anthropic", "ok")],
        tenant=world["acme"],
    )
    raw = world["client"].chat.completions.with_raw_response.create(
        model="stalling", messages=HELLO
    )
    row = audit_row(raw.headers["x-request-id"])
    assert [a.get("kind") for a in row.attempt_log] == ["timeout", None]


def test_routing_hints_prefer_and_exclude_providers(world):
    factories.make_route(
        "both",
        world["models"][("fake-openai", "ok")],
        world["models"][("fake-anthropic", "ok")],
        tenant=world["acme"],
    )
    preferred = world["client"].chat.completions.create(
        model="both", messages=HELLO, extra_body={"x-gateway": {"provider": "fake-anthropic"}}
    )
    assert preferred.choices[0].message.content.startswith("fake-anthropic")
    excluded = world["client"].chat.completions.create(
        model="both",
        messages=HELLO,
        extra_headers={"x-gateway-exclude-provider": "fake-openai"},
    )
    assert excluded.choices[0].message.content.startswith("fake-anthropic")
    with pytest.raises(openai.BadRequestError) as caught:
        world["client"].chat.completions.create(
            model="both",
            messages=HELLO,
            extra_headers={"x-gateway-exclude-provider": "fake-openai,fake-anthropic"},
        )
    assert caught.value.body["code"] == "no_target_left"


def test_a_request_timeout_hint_bounds_the_whole_call(world):
    factories.make_route("hanging", world["models"][("fake-openai", "stall")], tenant=world["acme"])
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        world["client"].chat.completions.create(
            model="hanging", messages=HELLO, extra_headers={"x-gateway-timeout": "0.5"}
        )
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 1.8  # the provider's own timeout is 2 s


def test_tags_from_the_gateway_extension_land_on_the_audit_row(world):
    raw = world["client"].chat.completions.with_raw_response.create(
        model="gpt",
        messages=HELLO,
        extra_body={"x-gateway": {"metadata": {"feature": "chat", "user_id": "u_123"}}},
    )
    row = audit_row(raw.headers["x-request-id"])
    assert row.metadata["tags"] == {"feature": "chat", "user_id": "u_123"}


def test_hedging_starts_the_next_target_and_keeps_the_faster_answer(world):
    route = factories.make_route(
        "hedged",
        world["models"][("fake-openai", "stall")],
        world["models"][("fake-anthropic", "ok")],
        tenant=world["acme"],
    )
    Route.objects.filter(pk=route.pk).update(hedge_after_ms=200)
    Route.objects.get(pk=route.pk).save()
    time.sleep(0.1)
    for stream in (False, True):
        started = time.monotonic()
        if stream:
            with world["client"].chat.completions.with_streaming_response.create(
                model="hedged", messages=HELLO, stream=True
            ) as raw:
                request_id = raw.headers["x-request-id"]
                text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        else:
            raw = world["client"].chat.completions.with_raw_response.create(
                model="hedged", messages=HELLO
            )
            request_id = raw.headers["x-request-id"]
            text = raw.parse().choices[0].message.content
        assert text.startswith("fake-anthropic")
        assert time.monotonic() - started < 1.5  # well before the stalled target's 2 s timeout
        row = audit_row(request_id)
        assert row.metadata.get("hedged") is True
        assert row.provider == "fake-anthropic"
        kinds = {(a["provider"], a.get("kind")) for a in row.attempt_log}
        assert ("fake-openai", "hedge_cancelled") in kinds
