"""OpenAI, OpenAI-compatible servers (vLLM, Ollama, LiteLLM, ...) and Azure OpenAI.

They already speak the gateway's own format, so the request goes out unchanged (but for the
upstream model name) and the answer comes back unchanged. The work here is the transport:
credentials, timeouts, forcing usage into every stream, and the right error for each failure.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import orjson

from providers.base import Target, UpstreamError, UpstreamStreamError
from providers.calls import api_key, interrupted, open_stream, post_json
from providers.sse import iter_events

AZURE_DEFAULT_API_VERSION = "2024-10-21"

_DONE = b"[DONE]"
_STREAM_FIELDS = ("stream", "stream_options")


class OpenAIProvider:
    """Kinds `openai` and `openai_compatible`: POST {base_url}/chat/completions."""

    def url(self, target: Target) -> str:
        return f"{target.base_url}/chat/completions"

    def headers(self, target: Target, *, stream: bool) -> dict[str, str]:
        headers = {
            "content-type": "application/json",
            "accept": "text/event-stream" if stream else "application/json",
        }
        key = api_key(target)
        if key:
            headers.update(self.auth_headers(key))
        return headers

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    async def complete(self, target: Target, body: dict, client: httpx.AsyncClient) -> dict:
        # OpenAI rejects stream_options on a non-streamed call.
        payload = {name: value for name, value in body.items() if name not in _STREAM_FIELDS}
        payload["model"] = target.model
        data = await post_json(
            client, target, self.url(target), self.headers(target, stream=False), payload
        )
        if "choices" not in data:
            # Some compatible servers answer 200 with an error body.
            raise UpstreamError(
                f"upstream answered 200 without choices: {_error_message(data)}",
                status=200,
                kind="bad_response",
                body=data if isinstance(data.get("error"), dict) else None,
            )
        return data

    async def stream(
        self, target: Target, body: dict, client: httpx.AsyncClient
    ) -> AsyncIterator[dict]:
        payload = dict(body)
        payload["model"] = target.model
        payload["stream"] = True
        # Ask for the usage chunk whatever the client asked: the gateway bills from it and
        # strips it again when the client did not want it.
        payload["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        headers = self.headers(target, stream=True)
        started = False
        held: dict | None = None
        async with open_stream(client, target, self.url(target), headers, payload) as response:
            try:
                async for _event, data in iter_events(response):
                    if data == _DONE:
                        if held is not None:
                            yield held
                        return
                    try:
                        chunk = orjson.loads(data)
                    except orjson.JSONDecodeError as exc:
                        raise _malformed(started=started) from exc
                    if not isinstance(chunk, dict):
                        raise _malformed(started=started)
                    if "error" in chunk:
                        raise _error_event(chunk, started=started)
                    if not chunk.get("choices") and chunk.get("usage") is None:
                        # Azure's leading prompt_filter_results chunk: no id, no delta, no
                        # usage. Forwarding it would break "same id on every chunk".
                        continue
                    if not started:
                        if held is None and _bare_role(chunk):
                            # Hold back the content-free opening chunk: while nothing real
                            # has reached the client, a failure can still fall back.
                            held = chunk
                            continue
                        started = True
                        if held is not None:
                            yield held
                            held = None
                    yield chunk
            except httpx.HTTPError as exc:
                raise interrupted(exc, started=started) from exc
        if started:
            raise UpstreamStreamError("upstream stream ended without [DONE]", kind="truncated")
        raise UpstreamError("upstream stream ended before any chunk", kind="bad_response")


class AzureOpenAIProvider(OpenAIProvider):
    """Kind `azure_openai`: the model is the deployment name, the key goes in `api-key`."""

    def url(self, target: Target) -> str:
        version = target.api_version or AZURE_DEFAULT_API_VERSION
        return (
            f"{target.base_url}/openai/deployments/{target.model}/chat/completions"
            f"?api-version={version}"
        )

    def auth_headers(self, key: str) -> dict[str, str]:
        return {"api-key": key}


def _error_message(data: dict) -> str:
    error = data.get("error")
    if isinstance(error, dict):
        return str(error.get("message") or error.get("type") or "unknown error")
    return str(error or "unknown error")


def _bare_role(chunk: dict) -> bool:
    choices = chunk.get("choices")
    if not choices or len(choices) != 1 or choices[0].get("finish_reason"):
        return False
    delta = choices[0].get("delta") or {}
    return not (delta.keys() - {"role", "content", "refusal"}) and not (
        delta.get("content") or delta.get("refusal")
    )


def _malformed(*, started: bool) -> Exception:
    if started:
        return UpstreamStreamError("upstream sent a malformed chunk", kind="malformed_chunk")
    return UpstreamError("upstream sent a malformed chunk", kind="bad_response")


def _error_event(chunk: dict, *, started: bool) -> Exception:
    """An `{"error": ...}` event after a 200: retryable if nothing reached the client yet."""
    message = f"upstream failed mid-stream: {_error_message(chunk)}"
    if started:
        return UpstreamStreamError(message, kind="upstream_error_event")
    error = chunk["error"]
    body = {"error": error} if isinstance(error, dict) else None
    return UpstreamError(message, status=200, kind="server_error", body=body)
