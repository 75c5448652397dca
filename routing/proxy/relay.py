"""Relaying a stream to the client chunk by chunk, and how it ends in the audit log."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from gateway_project.lib import errors
from gateway_project.lib.errors import GatewayError
from providers.base import UpstreamStreamError
from providers.circuit import breaker as circuit_breaker
from routing.proxy.exchange import (
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


@dataclass
class _Relayed:
    """What a stream has sent so far: its text for the audit row, its size for the cap."""

    text: list[str] = field(default_factory=list)
    tool_args: dict[int, list[str]] = field(default_factory=dict)
    usage_seen: bool = False
    chars: int = 0

    def take(self, exchange: Exchange, chunk: dict) -> None:
        if chunk.get("usage"):
            self.usage_seen = True
            usage_from(exchange, chunk["usage"])
        for choice in chunk.get("choices") or ():
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                self.text.append(delta["content"])
                self.chars += len(delta["content"])
            for call in delta.get("tool_calls") or ():
                fn = call.get("function") or {}
                pieces = self.tool_args.setdefault(call.get("index", 0), [])
                if fn.get("name"):
                    pieces.append(f"[tool_call {fn['name']}] ")
                if fn.get("arguments"):
                    pieces.append(fn["arguments"])
                    self.chars += len(fn["arguments"])

    def response_text(self) -> str:
        return "".join(self.text) + "".join(
            "".join(parts) for _, parts in sorted(self.tool_args.items())
        )


def _char_budget(exchange: Exchange) -> int | None:
    """A hard budget reserved at most `output_cap` tokens: an upstream that ignores the cap
    is cut off there instead of overspending (about four characters a token)."""
    guard = exchange.guard
    if guard is not None and guard.holds_hard_budget and guard.output_cap:
        return guard.output_cap * 4 + 16
    return None


def _forwarded(chunk: dict, *, include_usage: bool) -> bytes | None:
    """The chunk as the client gets it (None: not at all)."""
    if include_usage:
        return sse(chunk)
    if not chunk.get("choices") and chunk.get("usage") is not None:
        return None  # we asked upstream for usage; a client that did not gets no trace of it
    chunk.pop("usage", None)
    return sse(chunk)


class Frames(Protocol):
    """How chunks reach the client: OpenAI's `data:` lines by default; the Messages API's
    events for `/v1/messages` (anthropic_stream.py)."""

    def chunk(self, chunk: dict) -> bytes | None: ...

    def end(self) -> bytes: ...

    def error(self, failure: GatewayError) -> bytes: ...


class OpenAIFrames:
    __slots__ = ("include_usage",)

    def __init__(self, *, include_usage: bool) -> None:
        self.include_usage = include_usage

    def chunk(self, chunk: dict) -> bytes | None:
        return _forwarded(chunk, include_usage=self.include_usage)

    def end(self) -> bytes:
        return b"data: [DONE]\n\n"

    def error(self, failure: GatewayError) -> bytes:
        return sse(failure.body())


def _stopped_at_budget(exchange: Exchange) -> GatewayError:
    exchange.metadata["stopped_at_budget"] = True
    return GatewayError(
        429,
        "The stream was stopped: it would have run past a hard budget.",
        type="insufficient_quota",
        code="insufficient_quota",
    )


async def _upstream_broke(exchange: Exchange, exc: UpstreamStreamError) -> GatewayError:
    if exchange.target is not None:
        await circuit_breaker.record(exchange.target, ok=False, kind=exc.kind)
    failure = errors.upstream_failed(f"The upstream stream failed: {exc.message}")
    failure.code = exc.kind
    return failure


async def _close(exchange: Exchange, stream: AsyncIterator[object], *, cancelled: bool) -> None:
    """Close the upstream stream and settle, once the row is recorded."""
    if cancelled:
        # The client left: settle now, on its own, whatever else is cancelled around us.
        settling = settle_detached(exchange)
        try:
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator
            await asyncio.shield(settling)
        except (asyncio.CancelledError, GeneratorExit):
            pass  # `settling` runs to completion on its own
        return
    try:
        await stream.aclose()  # type: ignore[attr-defined]  # an async generator
    finally:
        # After the stream's last byte has left, not before it.
        await settle_after_response(exchange)


async def relay(
    exchange: Exchange, stream: AsyncIterator[dict], first: dict, frames: Frames | None = None
) -> AsyncIterator[bytes]:
    """Forward chunks as they arrive and write the audit row however the stream ends."""
    chat = exchange.chat
    assert chat is not None
    if frames is None:
        frames = OpenAIFrames(include_usage=chat.include_usage)
    seen = _Relayed()
    outcome, status, failure = "cancelled", 499, None
    char_budget = _char_budget(exchange)
    trace = exchange.trace  # None unless tracing is on
    try:
        chunk: dict | None = first
        while chunk is not None:
            seen.take(exchange, chunk)
            if trace is not None:
                trace.take(chunk)
            if char_budget is not None and seen.chars > char_budget:
                failure = _stopped_at_budget(exchange)
                outcome, status = "rejected", 429
                yield frames.error(failure)
                return
            data = frames.chunk(chunk)
            if data is not None:
                yield data
            hold_reservation(exchange)  # a long stream keeps its budget reservation
            chunk = await anext(stream, None)
        yield frames.end()
        outcome, status = "success", 200
    except UpstreamStreamError as exc:
        failure = await _upstream_broke(exchange, exc)
        outcome, status = "upstream_error", 502
        yield frames.error(failure)
    except (asyncio.CancelledError, GeneratorExit):
        # The client went away: Django cancels us; the row still gets written below.
        raise
    except Exception:
        logger.exception("stream relay failed")
        failure = errors.internal_error()
        outcome, status = "error", 500
        yield frames.error(failure)
    finally:
        # Record first: nothing below may keep the row from being written, even if the
        # client's disconnect cancels us again while we await.
        exchange.response_text = seen.response_text()
        estimate_usage_if_missing(exchange, seen.usage_seen)
        if outcome == "cancelled":
            exchange.metadata["cancelled_after_ms"] = exchange.elapsed_ms()
        exchange.record(outcome=outcome, status=status, error=failure)
        await _close(exchange, stream, cancelled=outcome == "cancelled")
