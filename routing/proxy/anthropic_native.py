"""`/v1/messages` to a target of kind `anthropic`: the client's own body, untranslated.

The Messages dialect (messages.py) still parses the request into the chat form, for
routing, limits, budgets, the cache and the audit row; but a target that speaks Anthropic's
API gets the client's original body (only `model` set to the target's, the gateway's
`x-gateway` hints and the redirecting fields out, redaction applied), so `top_k`,
`thinking`, `cache_control`, citations and the exact stop sequence reach it. Its answer
goes back as received: the JSON as is, the stream event by event. The answer is also
translated (providers/anthropic/convert.py) on the side, for the usage and the text the
proxy records; other targets of the route (OpenAI's) keep the translated path, and
fallback between them works as before the first byte.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import orjson

from gateway_project.lib.errors import GatewayError
from providers.anthropic import AnthropicProvider
from providers.anthropic.adapter import error_event
from providers.anthropic.convert import StreamTranslator, to_chat_completion
from providers.base import Target, UpstreamError, UpstreamStreamError
from providers.sse import DEFAULT_EVENT
from routing.proxy.anthropic_answer import error_body
from routing.proxy.anthropic_stream import event
from routing.proxy.exchange import Exchange
from routing.proxy.request import FORBIDDEN_FIELDS

NATIVE = "x_anthropic_native"  # a result's key holding the upstream's answer as received
_STRIPPED = frozenset({"x-gateway", "x_gateway", "model", *FORBIDDEN_FIELDS})
_provider = AnthropicProvider()


def serves_natively(exchange: Exchange, target: Target) -> bool:
    chat = exchange.chat
    return chat is not None and chat.native is not None and target.kind == "anthropic"


def native_body(exchange: Exchange, target: Target, *, stream: bool) -> dict:
    chat, snap, guard = exchange.chat, exchange.snapshot, exchange.guard
    assert chat is not None and chat.native is not None and snap is not None
    body: dict = {"model": target.model}
    body.update((name, value) for name, value in chat.native.items() if name not in _STRIPPED)
    body = snap.redaction.upstream_body(body)
    if guard is not None and guard.injected_cap is not None:
        body["max_tokens"] = guard.injected_cap
    if stream:
        body["stream"] = True
    else:
        body.pop("stream", None)
    return body


async def complete_native(exchange: Exchange, target: Target, client: httpx.AsyncClient) -> dict:
    """The upstream's Message, as a chat completion for the stages, carrying the JSON as
    received under `NATIVE` (what `render` sends)."""
    raw = await _provider.complete_raw(target, native_body(exchange, target, stream=False), client)
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("upstream answered invalid JSON", kind="bad_response") from exc
    if not isinstance(message, dict) or message.get("type") == "error" or "content" not in message:
        raise UpstreamError(
            "upstream answered 200 without a message", status=200, kind="bad_response"
        )
    result = to_chat_completion(message)
    result[NATIVE] = raw.decode("utf-8", "replace")  # a str: the answer cache stores JSON
    return result


def render(result: dict) -> bytes | None:
    """The upstream's own answer, if `result` came from `complete_native()`."""
    native = result.get(NATIVE)
    return native.encode() if isinstance(native, str) else None


def _frame(name: str, data: bytes) -> bytes:
    if name == DEFAULT_EVENT:
        return b"data: " + data + b"\n\n"
    return b"event: " + name.encode() + b"\ndata: " + data + b"\n\n"


def _item(chunks: list[dict], raw: bytes) -> dict:
    """The events since the last item, as received, with what they mean as chat chunks
    (choices merged, the last usage): what the relay records and relays."""
    choices = [choice for chunk in chunks for choice in chunk.get("choices") or ()]
    usage = next((c["usage"] for c in reversed(chunks) if c.get("usage")), None)
    return {"choices": choices, "usage": usage, NATIVE: raw}


async def stream_native(
    exchange: Exchange, target: Target, client: httpx.AsyncClient
) -> AsyncIterator[dict]:
    """The upstream's events, relayed as received. Those before the first content (the
    `message_start`, a `ping`) are held back and sent with it, so that an upstream failing
    before its first token can still be replaced by another target."""
    body = native_body(exchange, target, stream=True)
    translator, held, started = StreamTranslator(), b"", False
    try:
        async with contextlib.aclosing(_provider.stream_raw(target, body, client)) as events:
            async for name, data in events:
                try:
                    decoded = orjson.loads(data)
                except orjson.JSONDecodeError:
                    decoded = None
                if not isinstance(decoded, dict):
                    raise _failed("upstream sent a malformed event", started, "malformed_chunk")
                if decoded.get("type") == "error":
                    raise error_event(decoded.get("error") or {}, started=started)
                chunks = translator.feed(decoded)
                held += _frame(name, data)
                if chunks or started:
                    started = True
                    yield _item(chunks, held)
                    held = b""
                if translator.done:
                    return
    except UpstreamStreamError as exc:
        if not started:  # nothing reached the client: another target may still answer
            raise UpstreamError(exc.message, kind="bad_response") from None
        raise
    raise _failed("upstream stream ended before message_stop", started, "truncated")


def _failed(message: str, started: bool, kind: str) -> Exception:
    if started:
        return UpstreamStreamError(message, kind=kind)
    return UpstreamError(message, kind="bad_response")


class NativeFrames:
    """The relay's framing (relay.Frames) for `stream_native()`'s items: their events as
    received; the upstream's own `message_stop` ends the stream."""

    __slots__ = ()

    def chunk(self, chunk: dict) -> bytes | None:
        return chunk.get(NATIVE) or None

    def end(self) -> bytes:
        return b""

    def error(self, failure: GatewayError) -> bytes:
        return event("error", error_body(failure))
