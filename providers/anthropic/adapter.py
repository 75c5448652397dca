"""The Anthropic Messages API behind the OpenAI interface: POST {base_url}/v1/messages."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

import httpx
import orjson
from django.conf import settings

from providers.anthropic.convert import ErrorEvent, StreamTranslator, to_chat_completion
from providers.anthropic.translate import to_messages_request
from providers.base import Target, UpstreamError, UpstreamStreamError
from providers.calls import (
    api_key,
    interrupted,
    open_stream,
    post_bytes,
    post_json,
    status_error,
)
from providers.sse import iter_events

ANTHROPIC_VERSION = "2023-06-01"

# How an `error` event inside a 200 stream maps onto an HTTP status, so that it is
# classified exactly like the same error arriving as a status line.
_EVENT_STATUS = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "overloaded_error": 529,
}


class AnthropicProvider:
    """Kind `anthropic`: translates the request, the answer and the event stream."""

    def url(self, target: Target) -> str:
        return f"{target.base_url}/v1/messages"

    def headers(self, target: Target, *, stream: bool) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
            # The provider's api_version field, when set, pins another API version.
            "anthropic-version": target.api_version or ANTHROPIC_VERSION,
        }
        key = api_key(target)
        if key:
            headers["x-api-key"] = key
        return headers

    def payload(self, target: Target, body: dict) -> dict:
        default = target.extra.get("default_max_tokens") or settings.ANTHROPIC_DEFAULT_MAX_TOKENS
        return to_messages_request(body, model=target.model, default_max_tokens=default)

    async def complete(self, target: Target, body: dict, client: httpx.AsyncClient) -> dict:
        payload = self.payload(target, body)
        data = await post_json(
            client, target, self.url(target), self.headers(target, stream=False), payload
        )
        if data.get("type") == "error" or "content" not in data:
            raise UpstreamError(
                "upstream answered 200 without a message", status=200, kind="bad_response"
            )
        return to_chat_completion(data)

    async def stream(
        self, target: Target, body: dict, client: httpx.AsyncClient
    ) -> AsyncIterator[dict]:
        payload = self.payload(target, body)
        payload["stream"] = True
        headers = self.headers(target, stream=True)
        translator = StreamTranslator()
        started = False
        async with open_stream(client, target, self.url(target), headers, payload) as response:
            try:
                async for _event, data in iter_events(response):
                    try:
                        event = orjson.loads(data)
                    except orjson.JSONDecodeError as exc:
                        raise _malformed(started=started) from exc
                    if not isinstance(event, dict):
                        raise _malformed(started=started)
                    try:
                        chunks = translator.feed(event)
                    except ErrorEvent as exc:
                        raise error_event(exc.error, started=started) from exc
                    for chunk in chunks:
                        started = True
                        yield chunk
                    if translator.done:
                        return
            except httpx.HTTPError as exc:
                raise interrupted(exc, started=started) from exc
        if started:
            raise UpstreamStreamError("upstream stream ended before message_stop", kind="truncated")
        raise UpstreamError("upstream stream ended before any content", kind="bad_response")

    async def complete_raw(self, target: Target, body: dict, client: httpx.AsyncClient) -> bytes:
        """POST a Messages request as it is (`body` already names the target's model) and
        return the upstream's 2xx answer untouched; failures as `complete()` raises them."""
        headers = self.headers(target, stream=False)
        return await post_bytes(client, target, self.url(target), headers, body)

    async def stream_raw(
        self, target: Target, body: dict, client: httpx.AsyncClient
    ) -> AsyncGenerator[tuple[str, bytes]]:
        """POST a streamed Messages request as it is and yield its SSE events, `(event,
        data)`, as received. A failed status or connection before the first event is an
        `UpstreamError`, after it an `UpstreamStreamError`; events (`error` included) are
        not interpreted."""
        headers = self.headers(target, stream=True)
        started = False
        async with open_stream(client, target, self.url(target), headers, body) as response:
            try:
                async for name, data in iter_events(response):
                    started = True
                    yield name, data
            except httpx.HTTPError as exc:
                raise interrupted(exc, started=started) from exc


def _malformed(*, started: bool) -> Exception:
    if started:
        return UpstreamStreamError("upstream sent a malformed event", kind="malformed_chunk")
    return UpstreamError("upstream sent a malformed event", kind="bad_response")


def error_event(error: dict, *, started: bool) -> Exception:
    """An `error` event in a 200 stream, classified like the same error as a status."""
    message = str(error.get("message") or error.get("type") or "unknown error")
    if started:
        return UpstreamStreamError(
            f"upstream failed mid-stream: {message}", kind="upstream_error_event"
        )
    status = _EVENT_STATUS.get(error.get("type") or "", 500)
    return status_error(status, httpx.Headers(), orjson.dumps({"type": "error", "error": error}))
