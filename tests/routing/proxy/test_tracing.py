"""OpenTelemetry spans of proxy requests (routing/proxy/tracing.py), through the in-process
ASGI handler with the SDK's in-memory exporter: the span tree, its GenAI attributes, the
W3C traceparent sent upstream and taken from the client, no prompt or answer on any span,
and no span at all with tracing off."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from decimal import Decimal

import orjson
import pytest
from asgiref.sync import sync_to_async
from django.test import AsyncClient
from opentelemetry import trace as otel_trace
from opentelemetry.sdk import trace as sdk_trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from audit.services import redaction_rule_create
from billing.services import RateLimitSpec, Subject, rate_limit_create
from gateway_project.lib import tracing
from routing.models import Route
from tests import factories
from tests.conftest import forget_governance_counters
from tests.fakes.upstreams import COMPLETION_TOKENS, PROMPT_TOKENS
from tests.personas import Personas

pytestmark = pytest.mark.django_db(transaction=True)

SECRET_PROMPT = "Purple narwhal 7731 lives at jane.tracer@example.org"


@pytest.fixture(autouse=True)
async def fresh_governance() -> AsyncIterator[None]:
    await forget_governance_counters()
    yield
    await forget_governance_counters()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, exporting each span to memory as it ends."""
    exporter = InMemorySpanExporter()
    tracing.install(SimpleSpanProcessor(exporter))
    yield exporter
    tracing.shutdown()


@pytest.fixture
def limited(personas: Personas) -> Personas:
    """acme under a rate limit, so its requests are admitted and settled in Redis."""
    rate_limit_create(
        subject=Subject.of(personas.acme.tenant), spec=RateLimitSpec(rpm=2, tpm=10**6)
    )
    return personas


async def post(key: str, body: dict, **headers: str):
    headers["authorization"] = f"Bearer {key}"
    return await AsyncClient().post(
        "/v1/chat/completions",
        data=orjson.dumps(body),
        content_type="application/json",
        headers=headers,
    )


def chat(model: str = "echo", text: str = "Hello there", **extra: object) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


def the_request(exporter: InMemorySpanExporter) -> ReadableSpan:
    [request] = [s for s in exporter.get_finished_spans() if s.kind == SpanKind.SERVER]
    return request


def children(exporter: InMemorySpanExporter, parent: ReadableSpan) -> list[ReadableSpan]:
    assert parent.context is not None
    found = [
        s
        for s in exporter.get_finished_spans()
        if s.parent is not None and s.parent.span_id == parent.context.span_id
    ]
    return sorted(found, key=lambda s: s.start_time or 0)


def tree(exporter: InMemorySpanExporter) -> list[str]:
    return [s.name for s in children(exporter, the_request(exporter))]


def upstream_route(personas: Personas, base_url: str, *models: str, retries: int = 0) -> Route:
    provider = factories.make_provider(
        "fake-openai",
        kind="openai",
        base_url=base_url,
        timeout_s=5,
        connect_timeout_s=1,
        max_retries=retries,
    )
    targets = [factories.make_model(provider, model) for model in models]
    return factories.make_route("gpt", *targets, tenant=personas.acme.tenant)


async def test_a_request_is_a_span_with_admission_attempt_and_settlement(limited, spans):
    response = await post(limited.acme.plaintext_key, chat())
    assert response.status_code == 200
    request = the_request(spans)
    assert request.name == "chat echo"
    assert tree(spans) == ["gateway.admission", "chat echo", "gateway.settlement"]
    usage = orjson.loads(response.content)["usage"]
    attributes = dict(request.attributes or {})
    assert Decimal(str(attributes.pop("gateway.cost_usd"))) > 0
    assert attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "echo",
        "gen_ai.response.model": "echo",
        "gen_ai.provider.name": "stub",
        "gen_ai.usage.input_tokens": usage["prompt_tokens"],
        "gen_ai.usage.output_tokens": usage["completion_tokens"],
        "gen_ai.response.finish_reasons": ("stop",),
        "gateway.request_id": response["x-request-id"],
        "gateway.endpoint": "chat",
        "gateway.tenant": "acme",
        "gateway.route": "echo",
        "gateway.provider": "local",
        "gateway.outcome": "success",
        "gateway.fallback": False,
        "gateway.attempts": 1,
        "gateway.stream": False,
        "http.request.method": "POST",
        "http.response.status_code": 200,
        "url.path": "/v1/chat/completions",
    }
    assert request.status.status_code == StatusCode.UNSET
    [attempt] = [s for s in children(spans, request) if s.kind == SpanKind.CLIENT]
    assert attempt.attributes is not None
    assert attempt.attributes["gateway.attempt.fallback_index"] == 0
    assert attempt.attributes["gateway.attempt.number"] == 1
    assert attempt.attributes["gen_ai.provider.name"] == "stub"
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {request.context.trace_id}


async def test_a_stream_span_lasts_until_its_last_chunk(limited, spans):
    response = await post(limited.acme.plaintext_key, chat(stream=True))
    assert response.status_code == 200
    assert not [s for s in spans.get_finished_spans() if s.kind == SpanKind.SERVER]
    raw = b"".join([part async for part in response.streaming_content])
    assert raw.endswith(b"data: [DONE]\n\n")
    request = the_request(spans)
    assert tree(spans) == ["gateway.admission", "chat echo", "gateway.settlement"]
    assert request.attributes is not None
    assert request.attributes["gateway.stream"] is True
    assert request.attributes["gateway.outcome"] == "success"
    assert request.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert request.attributes["gen_ai.usage.output_tokens"] > 0
    [attempt] = [s for s in children(spans, request) if s.kind == SpanKind.CLIENT]
    # The winning attempt's span covers the whole upstream stream, not just its first chunk.
    assert attempt.end_time is not None and request.end_time is not None
    assert attempt.end_time <= request.end_time
    admission = children(spans, request)[0]
    assert admission.end_time is not None
    assert attempt.end_time > admission.end_time


async def test_a_fallback_makes_two_attempt_spans_with_their_indexes(
    personas, spans, fake_openai, fresh_circuits
):
    await sync_to_async(upstream_route)(personas, fake_openai.openai_base_url, "fail-500", "ok")
    response = await post(personas.acme.plaintext_key, chat("gpt"))
    assert response.status_code == 200
    request = the_request(spans)
    attempts = [s for s in children(spans, request) if s.kind == SpanKind.CLIENT]
    assert [s.name for s in attempts] == ["chat fail-500", "chat ok"]
    failed, answered = attempts
    assert failed.attributes is not None and answered.attributes is not None
    assert failed.attributes["gateway.attempt.fallback_index"] == 0
    assert answered.attributes["gateway.attempt.fallback_index"] == 1
    assert failed.attributes["error.type"] == "server_error"
    assert failed.attributes["http.response.status_code"] == 500
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "server_error"  # the kind, not the upstream's words
    assert answered.status.status_code == StatusCode.UNSET
    assert answered.attributes["gen_ai.provider.name"] == "openai"
    assert answered.attributes["server.address"] == "127.0.0.1"
    assert request.attributes is not None
    assert request.attributes["gateway.fallback"] is True
    assert request.attributes["gateway.attempts"] == 2
    assert request.attributes["gen_ai.response.model"] == "ok"
    assert request.attributes["gen_ai.usage.input_tokens"] == PROMPT_TOKENS
    assert request.attributes["gen_ai.usage.output_tokens"] == COMPLETION_TOKENS


async def test_a_retry_is_its_own_attempt_span_with_its_number(
    personas, spans, fake_openai, fresh_circuits
):
    await sync_to_async(upstream_route)(
        personas, fake_openai.openai_base_url, "fail-429", retries=1
    )
    response = await post(personas.acme.plaintext_key, chat("gpt"))
    assert response.status_code == 502
    attempts = [s for s in children(spans, the_request(spans)) if s.kind == SpanKind.CLIENT]
    assert [(s.attributes or {}).get("gateway.attempt.number") for s in attempts] == [1, 2]
    assert {(s.attributes or {}).get("gateway.attempt.fallback_index") for s in attempts} == {0}
    assert {(s.attributes or {}).get("error.type") for s in attempts} == {"rate_limited"}


async def test_a_refused_request_ends_at_its_admission_span(limited, spans):
    key = limited.acme.plaintext_key
    for _ in range(2):
        assert (await post(key, chat())).status_code == 200
    spans.clear()
    response = await post(key, chat())
    assert response.status_code == 429
    request = the_request(spans)
    assert tree(spans) == ["gateway.admission"]  # nothing was reserved: nothing to settle
    admission = children(spans, request)[0]
    assert admission.status.status_code == StatusCode.ERROR
    assert admission.attributes is not None
    assert admission.attributes["gateway.outcome"] == "rejected"
    assert admission.attributes["http.response.status_code"] == 429
    assert request.status.status_code == StatusCode.ERROR
    assert request.attributes is not None
    assert request.attributes["gateway.outcome"] == "rejected"
    assert request.attributes["error.type"] == admission.attributes["error.type"]
    assert request.attributes["gateway.attempts"] == 0


async def test_a_request_with_a_wrong_key_has_its_span_and_no_tenant(personas, spans):
    response = await post("gwk_not_a_real_key_at_all", chat())
    assert response.status_code == 401
    request = the_request(spans)
    assert request.name == "chat"
    assert request.attributes is not None
    assert "gateway.tenant" not in request.attributes
    assert request.attributes["error.type"] == "invalid_api_key"
    assert tree(spans) == []


def every_text(exporter: InMemorySpanExporter) -> str:
    """Every name, attribute and event of every span, as one string."""
    texts = []
    for span in exporter.get_finished_spans():
        texts.append(span.name)
        texts.append(repr(dict(span.attributes or {})))
        texts.extend(repr((e.name, dict(e.attributes or {}))) for e in span.events)
        texts.append(repr(span.status.description))
    return "\n".join(texts)


@pytest.mark.parametrize("model", ["ok", "fail-400"])
@pytest.mark.parametrize("stream", [False, True])
async def test_no_span_holds_the_prompt_or_the_answer(
    personas, spans, fake_openai, fresh_circuits, model, stream
):
    """The fake upstream answers with the prompt in its text: neither it nor the upstream's
    error message (fail-400) may reach a span."""
    await sync_to_async(upstream_route)(personas, fake_openai.openai_base_url, model)
    response = await post(personas.acme.plaintext_key, chat("gpt", SECRET_PROMPT, stream=stream))
    if response.streaming:
        body = b"".join([part async for part in response.streaming_content])
    else:
        body = response.content
    if model == "ok":
        assert b"narwhal 7731" in body  # the answer did hold it
    texts = every_text(spans)
    assert "chat gpt" in texts
    for secret in ("narwhal", "7731", "jane.tracer", "example.org", "says", "fake upstream"):
        assert secret not in texts


async def test_the_upstream_gets_the_attempts_traceparent(personas, spans, fake_openai):
    await sync_to_async(upstream_route)(personas, fake_openai.openai_base_url, "ok")
    fake_openai.clear()
    assert (await post(personas.acme.plaintext_key, chat("gpt"))).status_code == 200
    version, trace_id, parent_id, flags = fake_openai.last.headers["traceparent"].split("-")
    request = the_request(spans)
    [attempt] = [s for s in children(spans, request) if s.kind == SpanKind.CLIENT]
    assert version == "00" and int(flags, 16) & 1  # sampled
    assert int(trace_id, 16) == request.context.trace_id
    assert int(parent_id, 16) == attempt.context.span_id


async def test_a_client_traceparent_becomes_the_requests_parent(personas, spans, fake_openai):
    await sync_to_async(upstream_route)(personas, fake_openai.openai_base_url, "ok")
    trace_id, span_id = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
    response = await post(
        personas.acme.plaintext_key, chat("gpt"), traceparent=f"00-{trace_id}-{span_id}-01"
    )
    assert response.status_code == 200
    request = the_request(spans)
    assert request.parent is not None and request.parent.is_remote
    assert request.parent.span_id == int(span_id, 16)
    assert {s.context.trace_id for s in spans.get_finished_spans()} == {int(trace_id, 16)}
    assert fake_openai.last.headers["traceparent"].split("-")[1] == trace_id


async def test_a_malformed_client_traceparent_starts_a_trace_of_our_own(personas, spans):
    response = await post(personas.acme.plaintext_key, chat(), traceparent="00-zz-yy-01")
    assert response.status_code == 200
    assert the_request(spans).parent is None


async def test_with_content_capture_the_prompt_is_on_the_span_as_the_audit_redacts_it(
    personas, spans, monkeypatch
):
    await sync_to_async(redaction_rule_create)(
        name="emails", detector="email", replacement="[EMAIL]"
    )
    monkeypatch.setattr(tracing, "CAPTURE_CONTENT", True)
    response = await post(personas.acme.plaintext_key, chat(text=SECRET_PROMPT))
    assert response.status_code == 200
    attributes = the_request(spans).attributes or {}
    [message] = orjson.loads(str(attributes["gen_ai.input.messages"]))
    assert message["role"] == "user"
    assert message["parts"][0]["content"] == "Purple narwhal 7731 lives at [EMAIL]"
    [answer] = orjson.loads(str(attributes["gen_ai.output.messages"]))
    assert answer["role"] == "assistant" and "[EMAIL]" in answer["parts"][0]["content"]
    assert "jane.tracer" not in every_text(spans)


class SpanCounter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made = 0
        for cls in (sdk_trace.Span, otel_trace.NonRecordingSpan):
            original = cls.__init__

            def counting(span, *args, _original=original, **kwargs):
                self.made += 1
                _original(span, *args, **kwargs)

            monkeypatch.setattr(cls, "__init__", counting)


async def test_with_tracing_off_no_span_object_is_made(personas, fake_openai, monkeypatch):
    assert not tracing.ENABLED
    await sync_to_async(upstream_route)(personas, fake_openai.openai_base_url, "ok")
    counter = SpanCounter(monkeypatch)
    fake_openai.clear()
    response = await post(
        personas.acme.plaintext_key,
        chat("gpt", stream=True),
        traceparent="00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
    )
    b"".join([part async for part in response.streaming_content])
    assert (await post(personas.acme.plaintext_key, chat())).status_code == 200
    assert counter.made == 0
    assert "traceparent" not in fake_openai.last.headers


async def test_the_span_counter_sees_spans_when_tracing_is_on(personas, spans, monkeypatch):
    """The test above could not fail if the counter counted nothing."""
    counter = SpanCounter(monkeypatch)
    assert (await post(personas.acme.plaintext_key, chat())).status_code == 200
    assert counter.made == len(spans.get_finished_spans()) > 0


async def test_an_embedding_request_is_an_embeddings_span(personas, spans):
    def embed_route() -> None:
        model = factories.make_model(personas.provider, "stub-embed", output_per_million="0")
        factories.make_route("embed", model)

    await sync_to_async(embed_route)()
    response = await AsyncClient().post(
        "/v1/embeddings",
        data=orjson.dumps({"model": "embed", "input": SECRET_PROMPT}),
        content_type="application/json",
        headers={"authorization": f"Bearer {personas.acme.plaintext_key}"},
    )
    assert response.status_code == 200
    request = the_request(spans)
    assert request.name == "embeddings embed"
    assert tree(spans) == ["gateway.admission", "embeddings stub-embed"]
    assert request.attributes is not None
    assert request.attributes["gen_ai.operation.name"] == "embeddings"
    assert request.attributes["gen_ai.response.model"] == "stub-embed"
    assert request.attributes["gen_ai.usage.input_tokens"] > 0
    assert "narwhal" not in every_text(spans)


async def test_a_sampled_out_request_records_nothing_but_passes_the_decision_upstream(
    personas, fake_openai, monkeypatch
):
    monkeypatch.setenv("OTEL_TRACES_SAMPLER", "always_off")
    exporter = InMemorySpanExporter()
    tracing.install(SimpleSpanProcessor(exporter))
    try:
        await sync_to_async(upstream_route)(personas, fake_openai.openai_base_url, "ok")
        counter = SpanCounter(monkeypatch)
        response = await post(personas.acme.plaintext_key, chat("gpt"))
        assert response.status_code == 200
    finally:
        tracing.shutdown()
    assert exporter.get_finished_spans() == ()
    assert counter.made == 1  # the request's own, not recording: none below it
    _, trace_id, _, flags = fake_openai.last.headers["traceparent"].split("-")
    assert int(trace_id, 16) and not int(flags, 16) & 1  # not sampled: upstream need not either
