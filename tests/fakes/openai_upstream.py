"""A fake OpenAI (and Azure OpenAI) server speaking the real wire format, JSON and SSE; the
model name picks the behaviour (tests/fakes/upstreams.py has the table)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import struct
from typing import Any

import orjson

from tests.fakes.openai_responses import handle_responses, is_responses
from tests.fakes.server import Exchange, FakeServer
from tests.fakes.upstreams import (
    COMPLETION_TOKENS,
    CREATED,
    FAILURES,
    OPENAI_GREETING,
    PROMPT_TOKENS,
    STALL_SECONDS,
    TOOL_INPUT,
    TRICKLE_SECONDS,
    ends_with_tool_result,
    last_text,
    split3,
)


class FakeOpenAI(FakeServer):
    """POST {openai_base_url}/chat/completions, and Azure's
    {base_url}/openai/deployments/<model>/chat/completions. The path is not checked."""

    @property
    def openai_base_url(self) -> str:
        """Like OpenAI's own `https://api.openai.com/v1`: what a provider row stores."""
        return f"{self.base_url}/v1"

    async def handle(self, ex: Exchange) -> None:
        if is_responses(ex.path):
            await handle_responses(ex)
            return
        body: dict[str, Any] = ex.body or {}
        model = body.get("model") or ex.path.split("/deployments/")[-1].split("/")[0]
        if scripted(model) in FAILURES:
            status = FAILURES[scripted(model)]
            headers = [("retry-after", "0")] if status == 429 else []
            error = {
                "message": f"fake upstream failure {status}",
                "type": "server_error",
                "param": None,
                "code": None,
            }
            if status == 400:
                error.update(type="invalid_request_error", param="messages", code="invalid_value")
            elif status == 429:
                error.update(type="rate_limit_error", code="rate_limit_exceeded")
            await ex.json(status, {"error": error}, headers)
            return
        if model == "stall" and await ex.wait_for_disconnect(STALL_SECONDS):
            return
        if ex.path.split("?")[0].endswith("/embeddings"):
            await _embeddings(ex, body, model)
            return
        messages = body.get("messages") or []
        calls = []
        if model == "tools" and body.get("tools") and not ends_with_tool_result(messages):
            calls = [
                {
                    "id": f"call_fake{i}",
                    "type": "function",
                    "function": {
                        "name": t["function"]["name"],
                        "arguments": orjson.dumps(TOOL_INPUT).decode(),
                    },
                }
                for i, t in enumerate(body["tools"][:2])
            ]
        content = None if calls else f"{OPENAI_GREETING} {last_text(messages)}"
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            await self._stream(ex, model, content, calls, include_usage)
        elif model == "midstream-drop":
            await ex.start(200, [("content-type", "application/json"), ("content-length", "4096")])
            await ex.raw(b'{"id": "chatcmpl-fake", "choices": [')
        elif model == "error-after-200":
            await ex.json(
                200, {"error": {"message": "fake failure in a 200", "type": "server_error"}}
            )
        elif model == "malformed-json":
            await ex.start(200, [("content-type", "application/json")])
            await ex.raw(b'{"id": "chatcmpl-fake", "choices": [{"message": oops')
            await ex.end()
        else:
            message = {"role": "assistant", "content": content, "refusal": None}
            if calls:
                message["tool_calls"] = calls
            await ex.json(
                200,
                {
                    "id": "chatcmpl-fake",
                    "object": "chat.completion",
                    "created": CREATED,
                    "model": model,
                    "system_fingerprint": "fp_fake",
                    "choices": [
                        {
                            "index": 0,
                            "message": message,
                            "logprobs": None,
                            "finish_reason": "tool_calls" if calls else "stop",
                        }
                    ],
                    "usage": _openai_usage(model),
                },
            )

    async def _stream(
        self, ex: Exchange, model: str, content: str | None, calls: list, include_usage: bool
    ) -> None:
        def chunk(delta: dict, finish: str | None = None) -> dict:
            out = {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": CREATED,
                "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                out["usage"] = None
            return out

        deltas: list[dict] = [
            {"role": "assistant", "content": "" if content is not None else None, "refusal": None}
        ]
        if content is not None:
            deltas += [{"content": piece} for piece in split3(content)]
        for i, call in enumerate(calls):
            opening = {
                "index": i,
                "id": call["id"],
                "type": "function",
                "function": {"name": call["function"]["name"], "arguments": ""},
            }
            deltas.append({"tool_calls": [opening]})
            for piece in split3(call["function"]["arguments"]):
                deltas.append({"tool_calls": [{"index": i, "function": {"arguments": piece}}]})
        await ex.start_sse()
        if model == "midstream-drop":
            for delta in deltas[:2]:
                await ex.sse(chunk(delta))
            return  # returning mid-body makes uvicorn cut the connection
        if model in ("error-after-200", "error-at-start"):
            for delta in deltas[: 2 if model == "error-after-200" else 1]:
                await ex.sse(chunk(delta))
            await ex.sse(
                {
                    "error": {
                        "message": "fake failure mid-stream",
                        "type": "server_error",
                        "param": None,
                        "code": None,
                    }
                }
            )
            await ex.end()
            return
        if model == "malformed-sse":
            await ex.sse(chunk(deltas[0]))
            await ex.raw(b"data: {this is not json\n\n")
            await ex.end()
            return
        if model == "stall-midstream":
            for delta in deltas[:2]:
                await ex.sse(chunk(delta))
            await ex.wait_for_disconnect(STALL_SECONDS)
            return
        await ex.raw(b": keepalive\n\n")
        for delta in deltas:
            if model == "trickle":
                await asyncio.sleep(TRICKLE_SECONDS)
            await ex.sse(chunk(delta))
        await ex.sse(chunk({}, "tool_calls" if calls else "stop"))
        if include_usage:
            final = chunk({})
            final["choices"] = []
            final["usage"] = _openai_usage(model)
            await ex.sse(final)
        if model != "truncated":
            await ex.sse(b"[DONE]")
        await ex.end()


# The model `cached` reports these details, as OpenAI does for a prompt-cache hit and a
# reasoning model.
CACHED_TOKENS = 8
REASONING_TOKENS = 5


def _openai_usage(model: str = "") -> dict:
    usage: dict = {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }
    if model == "cached":
        usage["prompt_tokens_details"] = {"cached_tokens": CACHED_TOKENS}
        usage["completion_tokens_details"] = {"reasoning_tokens": REASONING_TOKENS}
    return usage


# Embeddings (POST .../embeddings): the vector of an input is the unit vector along the axis
# its hash picks, EMBEDDING_DIMENSIONS long unless `dimensions` says otherwise. The model
# `floats-only` ignores `encoding_format` (always floats), as some compatible servers do;
# `no-usage` reports no usage. An embedding model `embed-<behaviour>` (`embed-fail-500`,
# `embed-floats-only`) behaves as `<behaviour>`: the gateway only sends embedding models.
EMBEDDING_DIMENSIONS = 1536


def scripted(model: str) -> str:
    """The behaviour a model name picks: `embed-<behaviour>` is `<behaviour>`."""
    return model.removeprefix("embed-")


def fake_vector(item: object, size: int) -> list[float]:
    digest = hashlib.sha256(orjson.dumps(item)).digest()
    vector = [0.0] * size
    vector[int.from_bytes(digest[:4], "little") % size] = 1.0
    return vector


async def _embeddings(ex: Exchange, body: dict, model: str) -> None:
    value = body.get("input")
    if isinstance(value, str) or (value and all(isinstance(t, int) for t in value)):
        value = [value]
    size = body.get("dimensions") or EMBEDDING_DIMENSIONS
    base64_wanted = body.get("encoding_format") == "base64" and scripted(model) != "floats-only"
    data = []
    for index, item in enumerate(value or []):
        vector: object = fake_vector(item, size)
        if base64_wanted:
            packed = struct.pack(f"<{size}f", *fake_vector(item, size))
            vector = base64.b64encode(packed).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    answer: dict = {"object": "list", "data": data, "model": model}
    if scripted(model) != "no-usage":
        answer["usage"] = {"prompt_tokens": PROMPT_TOKENS, "total_tokens": PROMPT_TOKENS}
    await ex.json(200, answer)
