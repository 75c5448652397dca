"""The internal stream (OpenAI `chat.completion.chunk` dicts) -> Anthropic's event sequence.

`message_start` and a `ping` with the first chunk; then per content block
`content_block_start` / `content_block_delta` (`text_delta`, `input_json_delta`) /
`content_block_stop`; at the end `message_delta` (stop reason, cumulative usage) and
`message_stop`. A failure after the first byte is an `event: error` frame. The relay
(relay.py) drives it through the same three calls as the OpenAI framing.
"""

from __future__ import annotations

import orjson

from gateway_project.lib.errors import GatewayError
from routing.proxy.anthropic_answer import error_body, message_id, message_usage, stop_reason


def event(name: str, payload: dict) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(payload) + b"\n\n"


class MessageFrames:
    """Turns chunks into events, one chunk at a time, and remembers what is still open."""

    __slots__ = ("_finish", "_open", "_started", "_tools", "_usage", "blocks", "input_tokens")

    def __init__(self, *, input_tokens: int = 0) -> None:
        self.input_tokens = input_tokens  # the estimate, until the upstream reports usage
        self.blocks = 0  # content blocks started so far
        self._open: int | None = None  # the block index still open
        self._tools: dict[int, int] = {}  # OpenAI tool call index -> block index
        self._started = False
        self._finish: object = None
        self._usage: dict | None = None

    def chunk(self, chunk: dict) -> bytes | None:
        out: list[bytes] = []
        if not self._started:
            self._started = True
            out.append(self._message_start(chunk))
            out.append(event("ping", {"type": "ping"}))
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if choice.get("index", 0) != 0:
                continue  # one message: the first choice
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                out.extend(self._text(delta["content"]))
            for call in delta.get("tool_calls") or ():
                out.extend(self._tool(call))
            if choice.get("finish_reason"):
                self._finish = choice["finish_reason"]
        return b"".join(out) or None

    def end(self) -> bytes:
        out = [self._stop_open()]
        usage = message_usage(self._usage) if self._usage else None
        out.append(
            event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason(self._finish), "stop_sequence": None},
                    "usage": usage or {"output_tokens": 0},
                },
            )
        )
        out.append(event("message_stop", {"type": "message_stop"}))
        return b"".join(out)

    def error(self, failure: GatewayError) -> bytes:
        return event("error", error_body(failure))

    def _message_start(self, chunk: dict) -> bytes:
        message: dict = {
            "id": message_id(chunk.get("id")),
            "type": "message",
            "role": "assistant",
            "model": chunk.get("model") or "",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": self.input_tokens, "output_tokens": 0},
        }
        return event("message_start", {"type": "message_start", "message": message})

    def _start(self, block: dict) -> bytes:
        stopped = self._stop_open()
        self._open = index = self.blocks
        self.blocks += 1
        start = {"type": "content_block_start", "index": index, "content_block": block}
        return stopped + event("content_block_start", start)

    def _stop_open(self) -> bytes:
        if self._open is None:
            return b""
        index, self._open = self._open, None
        return event("content_block_stop", {"type": "content_block_stop", "index": index})

    def _text(self, text: str) -> list[bytes]:
        out = []
        if self._open is None or self._open in self._tools.values():
            out.append(self._start({"type": "text", "text": ""}))
        delta = {"type": "text_delta", "text": text}
        out.append(self._delta(delta))
        return out

    def _tool(self, call: dict) -> list[bytes]:
        out = []
        position = call.get("index", 0)
        function = call.get("function") or {}
        if position not in self._tools:
            out.append(
                self._start(
                    {
                        "type": "tool_use",
                        "id": call.get("id") or "",
                        "name": function.get("name") or "",
                        "input": {},
                    }
                )
            )
            self._tools[position] = self.blocks - 1
        arguments = function.get("arguments")
        if arguments:
            delta = {"type": "input_json_delta", "partial_json": arguments}
            out.append(self._delta(delta, index=self._tools[position]))
        return out

    def _delta(self, delta: dict, *, index: int | None = None) -> bytes:
        at = self._open if index is None else index
        return event(
            "content_block_delta", {"type": "content_block_delta", "index": at, "delta": delta}
        )
