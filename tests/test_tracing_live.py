"""A real gateway process exports its spans over OTLP/HTTP when OTEL_EXPORTER_OTLP_ENDPOINT
is set (gateway_project/lib/tracing.configure), with the SDK's own variables honoured, and
exports what it still holds when it shuts down."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from tests import factories
from tests.fakes.otlp_collector import FakeCollector
from tests.live import GatewayProcess, stop_quietly
from tests.personas import Personas

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PROMPT = [{"role": "user", "content": "Mail jane.doe.4471@example.org the narwhal report"}]


def fake_route(personas: Personas, base_url: str) -> None:
    provider = factories.make_provider("fake-openai", kind="openai", base_url=base_url)
    factories.make_route("gpt", factories.make_model(provider, "ok"), tenant=personas.acme.tenant)


def traced_gateway(collector: FakeCollector, *, schedule_delay_ms: int) -> GatewayProcess:
    return GatewayProcess(
        extra_env={
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
            "OTEL_EXPORTER_OTLP_HEADERS": "x-collector-key=sesame",
            "OTEL_SERVICE_NAME": "gateway-under-test",
            "OTEL_BSP_SCHEDULE_DELAY": str(schedule_delay_ms),
        }
    ).start()


def post(gateway: GatewayProcess, key: str) -> httpx.Response:
    return httpx.post(
        f"{gateway.base_url}/v1/chat/completions",
        headers={
            "authorization": f"Bearer {key}",
            "traceparent": f"00-{TRACE_ID}-00f067aa0ba902b7-01",
        },
        json={"model": "gpt", "messages": PROMPT},
        timeout=10,
    )


def attributes(span: Span) -> dict[str, object]:
    values = {}
    for attribute in span.attributes:
        value = attribute.value
        values[attribute.key] = getattr(value, value.WhichOneof("value") or "string_value")
    return values


def test_spans_are_exported_over_otlp_when_an_endpoint_is_set(
    personas, fake_openai, django_db_blocker
):
    fake_route(personas, fake_openai.openai_base_url)
    with FakeCollector() as collector:
        gateway = traced_gateway(collector, schedule_delay_ms=60_000)
        try:
            response = post(gateway, personas.acme.plaintext_key)
            assert response.status_code == 200
            assert collector.exports == []  # batched: nothing before the delay...
        finally:
            stop_quietly(gateway, django_db_blocker=django_db_blocker)
        # ... and what was held went out when the server shut down.
        received = collector.spans()
        assert collector.headers[0]["x-collector-key"] == "sesame"
    assert {resource["service.name"] for resource, _ in received} == {"gateway-under-test"}
    spans = [span for _, span in received]
    assert {span.trace_id.hex() for span in spans} == {TRACE_ID}
    [request] = [span for span in spans if span.kind == Span.SpanKind.SPAN_KIND_SERVER]
    assert request.name == "chat gpt"
    assert request.parent_span_id.hex() == "00f067aa0ba902b7"
    assert attributes(request)["gateway.request_id"] == response.headers["x-request-id"]
    assert attributes(request)["gen_ai.provider.name"] == "openai"
    [attempt] = [span for span in spans if span.kind == Span.SpanKind.SPAN_KIND_CLIENT]
    assert attempt.parent_span_id == request.span_id
    sent = fake_openai.last.headers["traceparent"].split("-")
    assert (sent[1], sent[2]) == (TRACE_ID, attempt.span_id.hex())
    everything = repr([attributes(span) for span in spans])
    assert "jane.doe" not in everything and "narwhal" not in everything
