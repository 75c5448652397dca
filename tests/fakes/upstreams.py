"""Fake OpenAI and Anthropic servers that speak the real wire formats, JSON and SSE.

The upstream model name in the request picks the behaviour, so a gateway running in
another process drives them the same way as a test calling an adapter directly:

| model            | behaviour                                                          |
|------------------|--------------------------------------------------------------------|
| ok (and any other name) | answers "<GREETING> <last user or tool text>"                |
| tools            | calls every offered tool (at most 2) with TOOL_INPUT, unless the last message is a tool result |
| cache            | Anthropic: reports cache tokens (CACHE_* below)                    |
| stop-<reason>    | Anthropic: stop_reason <reason> (stop-max_tokens, stop-refusal, ...)|
| fail-400         | 400 with the vendor's error envelope (client error)                |
| fail-429         | 429 with `retry-after: 0`                                          |
| fail-500/502/503/529 | that status with the vendor's error envelope                   |
| stall            | sends nothing for STALL_SECONDS (until the client hangs up)        |
| midstream-drop   | two chunks (or half a JSON body), then the connection is cut       |
| error-after-200  | some content, then an error event (a 200 error body when not streamed) |
| error-at-start   | only the opening (role chunk / message_start), then an error event |
| truncated        | streams chunks and ends cleanly but without [DONE] / message_stop |

Usage is deterministic: PROMPT_TOKENS and COMPLETION_TOKENS. Anthropic streams send
`ping` events and two cumulative `message_delta` events, the last one carrying the
totals, to catch an adapter that adds them up.
"""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from tests.fakes.server import Exchange, FakeServer
from tests.fakes.server import free_port as free_port
from tests.fakes.server import refused_base_url as refused_base_url

PROMPT_TOKENS = 11
COMPLETION_TOKENS = 7
CACHE_INPUT_TOKENS = 3
CACHE_READ_TOKENS = 100
CACHE_CREATION_TOKENS = 20
CREATED = 1_700_000_000
STALL_SECONDS = 30.0
TRICKLE_SECONDS = 0.3  # between chunks of the "trickle" model: slow, but alive
TOOL_INPUT = {"location": "Paris"}
OPENAI_GREETING = "fake-openai says:"
ANTHROPIC_GREETING = "fake-anthropic says:"
FAILURES = {
    "fail-400": 400,
    "fail-429": 429,
    "fail-500": 500,
    "fail-502": 502,
    "fail-503": 503,
    "fail-529": 529,
}


def last_text(messages: list) -> str:
    """Text of the last user or tool message, in either vendor's format."""
    for message in reversed(messages or []):
        if message.get("role") not in ("user", "tool"):
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        texts = []
        for part in content or ():
            if part.get("type") == "text":
                texts.append(part.get("text", ""))
            elif part.get("type") == "tool_result":
                inner = part.get("content")
                texts.append(inner if isinstance(inner, str) else "")
        return " ".join(texts)
    return ""


def split3(text: str) -> list[str]:
    step = max(1, len(text) // 3)
    return [text[i : i + step] for i in range(0, len(text), step)]


def ends_with_tool_result(messages: list) -> bool:
    last = (messages or [{}])[-1]
    content = last.get("content")
    return last.get("role") == "tool" or (
        isinstance(content, list) and any(p.get("type") == "tool_result" for p in content)
    )


class FakeOpenAI(FakeServer):
    """POST {openai_base_url}/chat/completions, and Azure's
    {base_url}/openai/deployments/<model>/chat/completions. The path is not checked."""

    @property
    def openai_base_url(self) -> str:
        """Like OpenAI's own `https://api.openai.com/v1`: what a provider row stores."""
        return f"{self.base_url}/v1"

    async def handle(self, ex: Exchange) -> None:
        body: dict[str, Any] = ex.body or {}
        model = body.get("model") or ex.path.split("/deployments/")[-1].split("/")[0]
        if model in FAILURES:
            status = FAILURES[model]
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
                    "usage": _openai_usage(),
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
            final["usage"] = _openai_usage()
            await ex.sse(final)
        if model != "truncated":
            await ex.sse(b"[DONE]")
        await ex.end()


def _openai_usage() -> dict:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": COMPLETION_TOKENS,
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


class FakeAnthropic(FakeServer):
    """POST {anthropic_base_url}/v1/messages."""

    @property
    def anthropic_base_url(self) -> str:
        """Like Anthropic's own `https://api.anthropic.com`: what a provider row stores."""
        return self.base_url

    async def handle(self, ex: Exchange) -> None:
        body: dict[str, Any] = ex.body or {}
        model = body.get("model") or ""
        if model in FAILURES:
            status = FAILURES[model]
            kind = {400: "invalid_request_error", 429: "rate_limit_error", 529: "overloaded_error"}
            error = {
                "type": kind.get(status, "api_error"),
                "message": f"fake upstream failure {status}",
            }
            headers = [("retry-after", "0")] if status == 429 else []
            await ex.json(
                status, {"type": "error", "error": error}, [*headers, ("request-id", "req_fake")]
            )
            return
        if model == "stall" and await ex.wait_for_disconnect(STALL_SECONDS):
            return
        messages = body.get("messages") or []
        blocks: list[dict] = []
        if model == "tools" and body.get("tools") and not ends_with_tool_result(messages):
            blocks.append({"type": "text", "text": "Let me check."})
            for i, tool in enumerate(body["tools"][:2]):
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": f"toolu_fake{i}",
                        "name": tool["name"],
                        "input": TOOL_INPUT,
                    }
                )
            stop_reason = "tool_use"
        else:
            blocks.append({"type": "text", "text": f"{ANTHROPIC_GREETING} {last_text(messages)}"})
            stop_reason = model.removeprefix("stop-") if model.startswith("stop-") else "end_turn"
        usage = _anthropic_usage(model)
        if body.get("stream"):
            await self._stream(ex, model, blocks, stop_reason, usage)
            return
        if model == "midstream-drop":
            await ex.start(200, [("content-type", "application/json"), ("content-length", "4096")])
            await ex.raw(b'{"id": "msg_fake", "content": [')
            return
        await ex.json(
            200,
            {
                "id": "msg_fake",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": blocks,
                "stop_reason": stop_reason,
                "stop_sequence": None,
                "usage": usage,
            },
        )

    async def _stream(
        self, ex: Exchange, model: str, blocks: list, stop_reason: str, usage: dict
    ) -> None:
        events: list[dict] = []
        for index, block in enumerate(blocks):
            if block["type"] == "text":
                events.append(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    }
                )
                for piece in split3(block["text"]):
                    events.append(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        }
                    )
            else:
                opening = {**block, "input": {}}
                events.append(
                    {"type": "content_block_start", "index": index, "content_block": opening}
                )
                for piece in ["", *split3(orjson.dumps(block["input"]).decode())]:
                    events.append(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        }
                    )
            events.append({"type": "content_block_stop", "index": index})
        start_usage = {**usage, "output_tokens": 1}
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": start_usage,
        }
        await ex.start_sse()
        await ex.sse({"type": "message_start", "message": message}, "message_start")
        await ex.sse({"type": "ping"}, "ping")
        if model == "error-at-start":
            await ex.sse(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                "error",
            )
            await ex.end()
            return
        if model == "midstream-drop":
            for event in events[:2]:
                await ex.sse(event, event["type"])
            return  # returning mid-body makes uvicorn cut the connection
        if model == "error-after-200":
            for event in events[:2]:
                await ex.sse(event, event["type"])
            await ex.sse(
                {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
                "error",
            )
            await ex.end()
            return
        for n, event in enumerate(events):
            await ex.sse(event, event["type"])
            if n == 1:
                await ex.sse({"type": "ping"}, "ping")
        delta = {"stop_reason": stop_reason, "stop_sequence": None}
        # Cumulative usage: an adapter that adds these up reports too many output tokens.
        await ex.sse(
            {
                "type": "message_delta",
                "delta": delta,
                "usage": {"output_tokens": COMPLETION_TOKENS - 3},
            },
            "message_delta",
        )
        await ex.sse(
            {
                "type": "message_delta",
                "delta": delta,
                "usage": {"output_tokens": COMPLETION_TOKENS},
            },
            "message_delta",
        )
        if model != "truncated":
            await ex.sse({"type": "message_stop"}, "message_stop")
        await ex.end()


def _anthropic_usage(model: str) -> dict:
    if model == "cache":
        return {
            "input_tokens": CACHE_INPUT_TOKENS,
            "cache_read_input_tokens": CACHE_READ_TOKENS,
            "cache_creation_input_tokens": CACHE_CREATION_TOKENS,
            "output_tokens": COMPLETION_TOKENS,
        }
    return {
        "input_tokens": PROMPT_TOKENS,
        "cache_read_input_tokens": 0,
        "cache_creation_input_tokens": 0,
        "output_tokens": COMPLETION_TOKENS,
    }
