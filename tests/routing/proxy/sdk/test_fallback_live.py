"""The official openai SDK across several targets: fallback, retries, timeouts, routing
hints and hedging; against a real gateway process, with fake OpenAI and
Anthropic upstreams that speak the real wire formats. Nothing here is mocked."""

from __future__ import annotations

import time

import openai
import pytest

from providers.models import Provider
from routing.models import Route
from tests import factories
from tests.routing.proxy.sdk.support import HELLO, audit_row

pytestmark = pytest.mark.django_db(transaction=True)


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
def test_it_falls_back_to_the_next_target(personas, models, sdk, provider, model, kind, stream):
    factories.make_route(
        "resilient",
        models[(provider, model)],
        models[("fake-anthropic", "ok")],
        tenant=personas.acme.tenant,
    )
    if stream:
        with sdk.chat.completions.with_streaming_response.create(
            model="resilient", messages=HELLO, stream=True
        ) as raw:
            headers = raw.headers
            text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        raw = sdk.chat.completions.with_raw_response.create(model="resilient", messages=HELLO)
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


def test_when_every_target_fails_the_sdk_gets_a_502_and_the_row_says_so(personas, models, sdk):
    factories.make_route(
        "doomed",
        models[("fake-openai", "fail-500")],
        models[("fake-anthropic", "fail-503")],
        tenant=personas.acme.tenant,
    )
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="doomed", messages=HELLO)
    assert caught.value.status_code == 502
    assert caught.value.body["code"] == "upstream_error"
    row = audit_row(caught.value.response.headers["x-request-id"])
    assert (row.outcome, row.status_code, row.attempts) == ("upstream_error", 502, 2)


def test_when_every_target_times_out_it_is_a_504(personas, models, sdk):
    factories.make_route("slow", models[("fake-openai", "stall")], tenant=personas.acme.tenant)
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(model="slow", messages=HELLO)
    assert caught.value.status_code == 504
    assert caught.value.body["code"] == "upstream_timeout"


def test_an_upstream_400_is_passed_back_without_fallback(personas, models, sdk):
    factories.make_route(
        "strict",
        models[("fake-openai", "fail-400")],
        models[("fake-anthropic", "ok")],
        tenant=personas.acme.tenant,
    )
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="strict", messages=HELLO)
    row = audit_row(caught.value.response.headers["x-request-id"])
    assert row.attempts == 1 and row.status_code == 400


def test_a_disabled_provider_is_skipped_by_the_server(personas, models, sdk):
    factories.make_route(
        "two",
        models[("fake-openai", "ok")],
        models[("fake-anthropic", "ok")],
        tenant=personas.acme.tenant,
    )
    Provider.objects.filter(name="fake-openai").update(enabled=False)
    Provider.objects.get(name="fake-openai").save()  # through the write path: bumps the config
    time.sleep(0.2)
    completion = sdk.chat.completions.create(model="two", messages=HELLO)
    assert completion.choices[0].message.content.startswith("fake-anthropic")


@pytest.mark.parametrize(
    ("model", "kind"), [("fail-503", "server_error"), ("fail-429", "rate_limited")]
)
def test_a_retryable_failure_is_retried_on_the_same_target_before_failing_over(
    personas, models, sdk, fake_openai, model, kind
):
    patient = factories.make_provider(
        "patient", kind="openai", base_url=fake_openai.openai_base_url, max_retries=2
    )
    factories.make_route(
        "retrying",
        factories.make_model(patient, model),
        models[("fake-anthropic", "ok")],
        tenant=personas.acme.tenant,
    )
    raw = sdk.chat.completions.with_raw_response.create(model="retrying", messages=HELLO)
    assert raw.parse().choices[0].message.content.startswith("fake-anthropic")
    row = audit_row(raw.headers["x-request-id"])
    assert [(a["provider"], a.get("kind")) for a in row.attempt_log] == [
        ("patient", kind),
        ("patient", kind),
        ("patient", kind),
        ("fake-anthropic", None),
    ]


def test_a_stall_is_not_retried_on_the_same_target(personas, models, sdk, fake_openai):
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
        models[("fake-anthropic", "ok")],
        tenant=personas.acme.tenant,
    )
    raw = sdk.chat.completions.with_raw_response.create(model="stalling", messages=HELLO)
    row = audit_row(raw.headers["x-request-id"])
    assert [a.get("kind") for a in row.attempt_log] == ["timeout", None]


def test_routing_hints_prefer_and_exclude_providers(personas, models, sdk):
    factories.make_route(
        "both",
        models[("fake-openai", "ok")],
        models[("fake-anthropic", "ok")],
        tenant=personas.acme.tenant,
    )
    preferred = sdk.chat.completions.create(
        model="both", messages=HELLO, extra_body={"x-gateway": {"provider": "fake-anthropic"}}
    )
    assert preferred.choices[0].message.content.startswith("fake-anthropic")
    excluded = sdk.chat.completions.create(
        model="both",
        messages=HELLO,
        extra_headers={"x-gateway-exclude-provider": "fake-openai"},
    )
    assert excluded.choices[0].message.content.startswith("fake-anthropic")
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="both",
            messages=HELLO,
            extra_headers={"x-gateway-exclude-provider": "fake-openai,fake-anthropic"},
        )
    assert caught.value.body["code"] == "no_target_left"


def test_a_request_timeout_hint_bounds_the_whole_call(personas, models, sdk):
    factories.make_route("hanging", models[("fake-openai", "stall")], tenant=personas.acme.tenant)
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.chat.completions.create(
            model="hanging", messages=HELLO, extra_headers={"x-gateway-timeout": "0.5"}
        )
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 1.8  # the provider's own timeout is 2 s


def test_hedging_starts_the_next_target_and_keeps_the_faster_answer(personas, models, sdk):
    route = factories.make_route(
        "hedged",
        models[("fake-openai", "stall")],
        models[("fake-anthropic", "ok")],
        tenant=personas.acme.tenant,
    )
    Route.objects.filter(pk=route.pk).update(hedge_after_ms=200)
    Route.objects.get(pk=route.pk).save()
    time.sleep(0.1)
    for stream in (False, True):
        started = time.monotonic()
        if stream:
            with sdk.chat.completions.with_streaming_response.create(
                model="hedged", messages=HELLO, stream=True
            ) as raw:
                request_id = raw.headers["x-request-id"]
                text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
        else:
            raw = sdk.chat.completions.with_raw_response.create(model="hedged", messages=HELLO)
            request_id = raw.headers["x-request-id"]
            text = raw.parse().choices[0].message.content
        assert text.startswith("fake-anthropic")
        assert time.monotonic() - started < 1.5  # well before the stalled target's 2 s timeout
        row = audit_row(request_id)
        assert row.metadata.get("hedged") is True
        assert row.provider == "fake-anthropic"
        kinds = {(a["provider"], a.get("kind")) for a in row.attempt_log}
        assert ("fake-openai", "hedge_cancelled") in kinds
