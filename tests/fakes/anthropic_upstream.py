"""A fake Anthropic Messages API server speaking the real wire format, JSON and SSE; the
model name picks the behaviour (tests/fakes/upstreams.py has the table)."""

from __future__ import annotations

from typing import Any

import orjson

from tests.fakes.server import Exchange, FakeServer
from tests.fakes.upstreams import (
    ANTHROPIC_GREETING,
    CACHE_CREATION_TOKENS,
    CACHE_INPUT_TOKENS,
    CACHE_READ_TOKENS,
    COMPLETION_TOKENS,
    FAILURES,
    PROMPT_TOKENS,
    STALL_SECONDS,
    TOOL_INPUT,
    ends_with_tool_result,
    last_text,
    split3,
)


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
