"""Relaying a Responses API stream to the client event by event, and its audit row.

Every event goes out as it came (its `event:` name and data unchanged, in order); the relay
only reads them: the text for the audit row, the usage from the terminal event
(`response.completed`, `response.incomplete` or `response.failed`) for limits, budgets and
the ledger. A failure after the stream started is sent as an `error` event, then the stream
ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import orjson

from gateway_project.lib import errors
from gateway_project.lib.errors import GatewayError
from providers.base import UpstreamStreamError
from providers.responses import TERMINAL_EVENTS, ResponsesEvent
from routing.proxy.exchange import (
    Exchange,
    estimate_usage_if_missing,
    hold_reservation,
    usage_from,
)
from routing.proxy.relay import _char_budget, _close, _stopped_at_budget, _upstream_broke
from routing.proxy.responses_render import chat_usage

logger = logging.getLogger(__name__)


def response_text(response: dict) -> str:
    """A Response object's output as the audit row keeps it: text, and the calls made."""
    parts: list[str] = []
    for item in response.get("output") or ():
        if not isinstance(item, dict):
            continue
        if item.get("type") == "message":
            for part in item.get("content") or ():
                if isinstance(part, dict) and isinstance(part.get("text"), str):
                    parts.append(part["text"])
        elif item.get("type") == "function_call":
            parts.append(f"[tool_call {item.get('name')}({item.get('arguments', '')})]")
    return "\n".join(parts)


def failure_of(response: dict) -> GatewayError | None:
    """The error a `failed` Response carries, as the audit row records it."""
    if response.get("status") != "failed":
        return None
    error = response.get("error")
    if not isinstance(error, dict):
        error = {}
    failure = errors.upstream_failed(f"The upstream response failed: {error.get('message')}")
    failure.code = str(error.get("code") or "response_failed")
    return failure


def error_event(failure: GatewayError, sequence: int) -> bytes:
    """The Responses API's `error` event; its `error` envelope makes the SDKs raise."""
    envelope = failure.body()["error"]
    payload = {
        "type": "error",
        "code": envelope.get("code"),
        "message": envelope.get("message"),
        "param": envelope.get("param"),
        "sequence_number": sequence,
        "error": envelope,
    }
    return b"event: error\ndata: " + orjson.dumps(payload) + b"\n\n"


@dataclass
class _Seen:
    text: list[str] = field(default_factory=list)
    chars: int = 0
    sequence: int = 0
    usage_seen: bool = False
    final: dict | None = None  # the Response of the terminal event

    def take(self, exchange: Exchange, event: ResponsesEvent) -> None:
        payload = event.payload
        if isinstance(payload.get("sequence_number"), int):
            self.sequence = payload["sequence_number"] + 1
        delta = payload.get("delta")
        if event.name == "response.output_text.delta" and isinstance(delta, str):
            self.text.append(delta)
            self.chars += len(delta)
        elif event.name == "response.function_call_arguments.delta" and isinstance(delta, str):
            self.chars += len(delta)
        elif event.name in TERMINAL_EVENTS and isinstance(payload.get("response"), dict):
            self.final = payload["response"]
            usage = chat_usage(self.final.get("usage"))
            if usage is not None:
                self.usage_seen = True
                usage_from(exchange, usage)

    def response_text(self) -> str:
        return response_text(self.final) if self.final else "".join(self.text)


async def relay_events(
    exchange: Exchange, stream: AsyncIterator[ResponsesEvent], first: ResponsesEvent
) -> AsyncIterator[bytes]:
    """Forward events as they arrive and write the audit row however the stream ends."""
    seen = _Seen()
    outcome, status, failure = "cancelled", 499, None
    char_budget = _char_budget(exchange)
    try:
        event: ResponsesEvent | None = first
        while event is not None:
            seen.take(exchange, event)
            if char_budget is not None and seen.chars > char_budget:
                failure = _stopped_at_budget(exchange)
                outcome, status = "rejected", 429
                yield error_event(failure, seen.sequence)
                return
            yield event.sse()
            hold_reservation(exchange)  # a long stream keeps its budget reservation
            event = await anext(stream, None)
        failure = failure_of(seen.final or {})
        outcome, status = ("upstream_error", 502) if failure else ("success", 200)
    except UpstreamStreamError as exc:
        failure = await _upstream_broke(exchange, exc)
        outcome, status = "upstream_error", 502
        yield error_event(failure, seen.sequence)
    except (asyncio.CancelledError, GeneratorExit):
        raise  # the client went away; the row still gets written below
    except Exception:
        logger.exception("responses stream relay failed")
        failure = errors.internal_error()
        outcome, status = "error", 500
        yield error_event(failure, seen.sequence)
    finally:
        exchange.response_text = seen.response_text()
        estimate_usage_if_missing(exchange, seen.usage_seen)
        if seen.final is not None:
            exchange.metadata["response_status"] = seen.final.get("status")
        if outcome == "cancelled":
            exchange.metadata["cancelled_after_ms"] = exchange.elapsed_ms()
        exchange.record(outcome=outcome, status=status, error=failure)
        await _close(exchange, stream, cancelled=outcome == "cancelled")
