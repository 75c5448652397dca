"""OpenTelemetry tracing: set up once at start-up when an OTLP endpoint is configured, or
not at all.

`ENABLED` is what every call site on the request path checks first, as `tracing.ENABLED`
(read through the module, so that `install()` is seen): off, a request makes no span
object of any kind, not even the API's no-op one, and pays one attribute read per check.
The spans themselves are made at the proxy's stages (routing/proxy/tracing.py); this
module holds what the lower layers need too: the tracer, and the propagation headers of
the upstream attempt running in the current context, which `providers/calls.py` adds to
the request it builds.

The SDK is configured by its own standard variables (OTEL_EXPORTER_OTLP_ENDPOINT or
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, OTEL_SERVICE_NAME,
OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER, OTEL_BSP_*, OTEL_PROPAGATORS...), read by
the SDK itself; settings only decide whether it is on at all.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from gateway_project.lib.env import envbool, envstr

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
    from opentelemetry.trace import Tracer

logger = logging.getLogger(__name__)
SERVICE_NAME = "llm-gateway"

ENABLED = False
CAPTURE_CONTENT = False  # prompts and answers (redacted) on spans: an explicit opt-in
tracer: Tracer | None = None
_provider: TracerProvider | None = None

# Set around one upstream attempt (routing/proxy/tracing.py): the headers that carry its
# span's context upstream (`traceparent`, and `tracestate`/`baggage` when there are any).
upstream_headers: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar(
    "upstream_trace_headers", default=None
)


def tracing_settings() -> tuple[bool, bool]:
    """GATEWAY_TRACING and GATEWAY_TRACE_CONTENT from the environment. Tracing is on only
    when an OTLP endpoint is set (the SDK reads its other OTEL_* variables itself: headers,
    service name, sampler). Prompts and answers go on spans, redacted by the audit rules,
    never unless asked for: GATEWAY_TRACE_CONTENT, or the GenAI conventions' own variable."""
    endpoint = envstr("OTEL_EXPORTER_OTLP_ENDPOINT") or envstr("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    enabled = bool(endpoint) and not envbool("OTEL_SDK_DISABLED")
    content = envbool(
        "GATEWAY_TRACE_CONTENT", envbool("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT")
    )
    return enabled, content


def configure() -> bool:
    """At a server's start-up: the OTLP/HTTP exporter behind a batch processor when
    settings say tracing is on (an OTLP endpoint is set); nothing otherwise."""
    from django.conf import settings

    if not settings.GATEWAY_TRACING or ENABLED:
        return ENABLED
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # The exporter's HTTP calls run on the processor's own thread, batched, off the loop.
    provider = install(
        BatchSpanProcessor(OTLPSpanExporter()), capture_content=settings.GATEWAY_TRACE_CONTENT
    )
    trace.set_tracer_provider(provider)  # for any other instrumentation in the process
    logger.info("tracing on: spans exported over OTLP/HTTP")
    return True


def install(processor: SpanProcessor, *, capture_content: bool = False) -> TracerProvider:
    """Turn tracing on with `processor` (the batch exporter, or a test's in-memory one)."""
    global ENABLED, CAPTURE_CONTENT, tracer, _provider
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    resource = Resource.create()  # OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = Resource.create({"service.name": SERVICE_NAME})
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(processor)
    _provider = provider
    tracer = provider.get_tracer("gateway")
    CAPTURE_CONTENT = capture_content
    ENABLED = True
    return provider


def shutdown() -> None:
    """Export what is still queued and turn tracing off (a server's shutdown; tests)."""
    global ENABLED, tracer, _provider
    provider, _provider = _provider, None
    ENABLED, tracer = False, None
    if provider is not None:
        provider.shutdown()


def with_trace_headers(headers: dict[str, str]) -> dict[str, str]:
    """`headers` plus the current upstream attempt's propagation headers, if any."""
    extra = upstream_headers.get()
    return {**headers, **extra} if extra else headers
