"""OpenAI's Responses API (`POST {base}/responses`), passed through to OpenAI-family targets.

The request goes out as the client sent it (but for the upstream model name) and the answer
comes back as it is: a Response object, or its server-sent events, each forwarded with its
own `event:` name and unchanged data. Credentials and the failure taxonomy are the chat
adapter's (providers/openai.py, providers/calls.py).

Fallback stays possible while nothing has reached the client: the content-free opening
events (`response.created`, `response.in_progress`) are held back until the first event
that says something, so an `error` event or a broken connection right after them still
moves on to the next target.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import orjson

from providers.base import Target, UpstreamError, UpstreamStreamError
from providers.calls import interrupted, open_stream, post_json
from providers.openai import AzureOpenAIProvider, OpenAIProvider
from providers.sse import iter_events

KINDS = frozenset({"openai", "openai_compatible", "azure_openai"})
# The first Azure OpenAI api-version that serves /openai/responses.
AZURE_RESPONSES_API_VERSION = "2025-04-01-preview"
TERMINAL_EVENTS = frozenset({"response.completed", "response.incomplete", "response.failed"})
_OPENING_EVENTS = frozenset({"response.created", "response.in_progress", "response.queued"})
_openai = OpenAIProvider()
_azure = AzureOpenAIProvider()


@dataclass(frozen=True, slots=True)
class ResponsesEvent:
    """One server-sent event of a Responses stream: its name, its data as the upstream sent
    it (forwarded byte for byte) and that data parsed."""

    name: str
    data: bytes
    payload: dict

    @classmethod
    def of(cls, payload: dict) -> ResponsesEvent:
        return cls(str(payload.get("type") or "message"), orjson.dumps(payload), payload)

    def sse(self) -> bytes:
        return b"event: " + self.name.encode() + b"\ndata: " + self.data + b"\n\n"


def url(target: Target) -> str:
    if target.kind == "azure_openai":
        version = target.api_version
        if not version or version < "2025-03-01-preview":
            version = AZURE_RESPONSES_API_VERSION
        return f"{target.base_url}/openai/responses?api-version={version}"
    return f"{target.base_url}/responses"


def _headers(target: Target, *, stream: bool) -> dict[str, str]:
    adapter = _azure if target.kind == "azure_openai" else _openai
    return adapter.headers(target, stream=stream)


async def complete(target: Target, body: dict, client: httpx.AsyncClient) -> dict:
    payload = {name: value for name, value in body.items() if name != "stream_options"}
    payload["model"] = target.model
    payload["stream"] = False
    data = await post_json(client, target, url(target), _headers(target, stream=False), payload)
    if data.get("object") != "response" or not isinstance(data.get("output"), list):
        error = data.get("error")
        raise UpstreamError(
            "upstream answered 200 without a Response object",
            status=200,
            kind="bad_response",
            body={"error": error} if isinstance(error, dict) and "message" in error else None,
        )
    return data


def _parsed(data: bytes, *, started: bool) -> dict:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError:
        payload = None
    if isinstance(payload, dict):
        return payload
    if started:
        raise UpstreamStreamError("upstream sent a malformed event", kind="malformed_chunk")
    raise UpstreamError("upstream sent a malformed event", kind="bad_response")


def _error_event(payload: dict, *, started: bool) -> Exception:
    error = payload.get("error")
    if not isinstance(error, dict):
        error = payload
    message = f"upstream failed mid-stream: {error.get('message') or 'unknown error'}"
    if started:
        return UpstreamStreamError(message, kind="upstream_error_event")
    return UpstreamError(message, status=200, kind="server_error")


async def stream(
    target: Target, body: dict, client: httpx.AsyncClient
) -> AsyncIterator[ResponsesEvent]:
    """The upstream's events in order; raises as providers/base.py says a stream must."""
    payload = dict(body)
    payload["model"] = target.model
    payload["stream"] = True
    held: list[ResponsesEvent] = []
    started = ended = False
    headers = _headers(target, stream=True)
    async with open_stream(client, target, url(target), headers, payload) as response:
        try:
            async for name, data in iter_events(response):
                if data == b"[DONE]":
                    break
                parsed = _parsed(data, started=started)
                event = ResponsesEvent(str(parsed.get("type") or name), data, parsed)
                if event.name == "error":
                    raise _error_event(parsed, started=started)
                if not started and event.name in _OPENING_EVENTS:
                    held.append(event)
                    continue
                if not started:
                    started = True
                    for opening in held:
                        yield opening
                yield event
                if event.name in TERMINAL_EVENTS:
                    ended = True
        except httpx.HTTPError as exc:
            raise interrupted(exc, started=started) from exc
    if ended:
        return
    if started:
        raise UpstreamStreamError("upstream stream ended before the response did", kind="truncated")
    raise UpstreamError("upstream stream ended before any event", kind="bad_response")
