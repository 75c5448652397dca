"""Relaying a stream to the client chunk by chunk, and how it ends in the audit log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import orjson

from gateway_project.lib import errors
from gateway_project.lib.errors import GatewayError
from providers.base import UpstreamStreamError
from providers.circuit import breaker as circuit_breaker
from routing.exchange import (
    Exchange,
    estimate_usage_if_missing,
    hold_reservation,
    settle_after_response,
    settle_detached,
    usage_from,
)

logger = logging.getLogger(__name__)


def completion_text(result: dict) -> str:
    parts: list[str] = []
    for choice in result.get("choices") or ():
        message = choice.get("message") or {}
        if isinstance(message.get("content"), str):
            parts.append(message["content"])
        for call in message.get("tool_calls") or ():
            function = call.get("function") or {}
            parts.append(f"[tool_call {function.get('name')}({function.get('arguments', '')})]")
    return "\n".join(parts)


def sse(payload: dict) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\n\n"


async def relay(
    exchange: Exchange, stream: AsyncIterator[dict], first: dict
) -> AsyncIterator[bytes]:
    """Forward chunks as they arrive and write the audit row however the stream ends."""
    chat = exchange.chat
    assert chat is not None
    text: list[str] = []
    tool_args: dict[int, list[str]] = {}
    usage_seen = False
    outcome, status, failure = "cancelled", 499, None
    guard = exchange.guard
    # A hard budget reserved at most `output_cap` tokens: an upstream that ignores the cap
    # is cut off there instead of overspending (about four characters a token).
    char_budget = (
        guard.output_cap * 4 + 16
        if guard is not None and guard.holds_hard_budget and guard.output_cap
        else None
    )
    streamed_chars = 0
    try:
        chunk: dict | None = first
        while chunk is not None:
            is_usage_chunk = not chunk.get("choices") and chunk.get("usage") is not None
            if chunk.get("usage"):
                usage_seen = True
                usage_from(exchange, chunk["usage"])
            for choice in chunk.get("choices") or ():
                delta = choice.get("delta") or {}
                if isinstance(delta.get("content"), str):
                    text.append(delta["content"])
                    streamed_chars += len(delta["content"])
                for call in delta.get("tool_calls") or ():
                    fn = call.get("function") or {}
                    pieces = tool_args.setdefault(call.get("index", 0), [])
                    if fn.get("name"):
                        pieces.append(f"[tool_call {fn['name']}] ")
                    if fn.get("arguments"):
                        pieces.append(fn["arguments"])
                        streamed_chars += len(fn["arguments"])
            if char_budget is not None and streamed_chars > char_budget:
                failure = GatewayError(
                    429,
                    "The stream was stopped: it would have run past a hard budget.",
                    type="insufficient_quota",
                    code="insufficient_quota",
                )
                outcome, status = "rejected", 429
                exchange.metadata["stopped_at_budget"] = True
                yield sse(failure.body())
                return
            if chat.include_usage:
                yield sse(chunk)
            elif not is_usage_chunk:
                # We asked upstream for usage; a client that did not gets no trace of it.
                chunk.pop("usage", None)
                yield sse(chunk)
            hold_reservation(exchange)  # a long stream keeps its budget reservation
            chunk = await anext(stream, None)
        yield b"data: [DONE]\n\n"
        outcome, status = "success", 200
    except UpstreamStreamError as exc:
        if exchange.target is not None:
            await circuit_breaker.record(exchange.target, ok=False, kind=exc.kind)
        failure = errors.upstream_failed(f"The upstream stream failed: {exc.message}")
        failure.code = exc.kind
        outcome, status = "upstream_error", 502
        yield sse(failure.body())
    except (asyncio.CancelledError, GeneratorExit):
        # The client went away: Django cancels us; the row still gets written below.
        raise
    except Exception:
        logger.exception("stream relay failed")
        failure = errors.internal_error()
        outcome, status = "error", 500
        yield sse(failure.body())
    finally:
        # Record first: nothing below may keep the row from being written, even if the
        # client's disconnect cancels us again while we await.
        exchange.response_text = "".join(text) + "".join(
            "".join(parts) for _, parts in sorted(tool_args.items())
        )
        estimate_usage_if_missing(exchange, usage_seen)
        if outcome == "cancelled":
            exchange.metadata["cancelled_after_ms"] = exchange.elapsed_ms()
        exchange.record(outcome=outcome, status=status, error=failure)
        if outcome == "cancelled":
            # The client left: settle now, on its own, whatever else is cancelled around us.
            settling = settle_detached(exchange)
            try:
                await stream.aclose()  # type: ignore[attr-defined]
                await asyncio.shield(settling)
            except (asyncio.CancelledError, GeneratorExit):
                pass  # `settling` runs to completion on its own
        else:
            try:
                await stream.aclose()  # type: ignore[attr-defined]
            finally:
                # After the stream's last byte has left, not before it.
                await settle_after_response(exchange)
