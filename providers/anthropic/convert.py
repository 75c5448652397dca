"""Anthropic Messages answers -> OpenAI `chat.completion` and `chat.completion.chunk` dicts."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


class ErrorEvent(Exception):
    """An `error` event inside a 200 stream; the adapter decides what it becomes."""

    def __init__(self, error: dict) -> None:
        self.error = error
        super().__init__(str(error.get("message") or error.get("type") or "unknown error"))


def finish_reason(stop_reason: str | None) -> str:
    return FINISH_REASONS.get(stop_reason or "end_turn", "stop")


def usage(raw: dict) -> dict:
    """Prompt tokens include cached ones: Anthropic counts them apart, OpenAI does not."""
    cache_read = raw.get("cache_read_input_tokens") or 0
    prompt = (
        (raw.get("input_tokens") or 0) + cache_read + (raw.get("cache_creation_input_tokens") or 0)
    )
    completion = raw.get("output_tokens") or 0
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cache_read},
    }


def _arguments(value: object) -> str:
    return orjson.dumps(value if value is not None else {}).decode()


def to_chat_completion(message: dict, *, created: int | None = None) -> dict:
    """A non-streamed Messages response as a `chat.completion`."""
    texts: list[str] = []
    tool_calls: list[dict] = []
    for block in message.get("content") or ():
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "tool_use":
            tool_calls.append(
                {
                    "id": block.get("id"),
                    "type": "function",
                    "function": {
                        "name": block.get("name"),
                        "arguments": _arguments(block.get("input")),
                    },
                }
            )
        # thinking / redacted_thinking blocks have no place in a chat.completion.
    reply: dict = {
        "role": "assistant",
        "content": "".join(texts) if texts or not tool_calls else None,
        "refusal": None,
    }
    if tool_calls:
        reply["tool_calls"] = tool_calls
    return {
        "id": f"chatcmpl-{message.get('id', '')}",
        "object": "chat.completion",
        "created": created if created is not None else int(time.time()),
        "model": message.get("model"),
        "choices": [
            {
                "index": 0,
                "message": reply,
                "logprobs": None,
                "finish_reason": finish_reason(message.get("stop_reason")),
            }
        ],
        "usage": usage(message.get("usage") or {}),
    }


class StreamTranslator:
    """Turns the Messages event sequence into OpenAI chunks, one event at a time.

    The role is not sent on `message_start` but with the first real content: an
    upstream that fails between `message_start` and its first token (overloaded is
    common there) has then sent nothing to the client yet, so the proxy can still fall
    back to another target.
    """

    __slots__ = ("_role_sent", "_stop_reason", "_tools", "_usage", "created", "done", "id", "model")

    def __init__(self, *, created: int | None = None) -> None:
        self.created = created if created is not None else int(time.time())
        self.id = "chatcmpl-"
        self.model = ""
        self.done = False
        self._role_sent = False
        self._stop_reason: str | None = None
        self._usage: dict = {}
        self._tools: dict[int, int] = {}  # Anthropic block index -> OpenAI tool call index

    def feed(self, event: dict) -> list[dict]:
        """The chunks (often none, at most three) that one decoded event produces."""
        kind = event.get("type")
        step = _STEPS.get(kind) if isinstance(kind, str) else None
        # ping, content_block_stop, and event types newer than this code produce nothing.
        return step(self, event) if step is not None else []

    def _block_delta(self, event: dict) -> list[dict]:
        delta = event.get("delta") or {}
        delta_kind = delta.get("type")
        if delta_kind == "text_delta":
            return self._emit({"content": delta.get("text", "")})
        if delta_kind == "input_json_delta" and delta.get("partial_json"):
            index = self._tools.get(event.get("index", -1))
            if index is not None:
                fragment = {"index": index, "function": {"arguments": delta["partial_json"]}}
                return self._emit({"tool_calls": [fragment]})
        return []  # thinking, signature and citation deltas are not relayed

    def _block_start(self, event: dict) -> list[dict]:
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            index = len(self._tools)
            self._tools[event.get("index", index)] = index
            call = {
                "index": index,
                "id": block.get("id"),
                "type": "function",
                "function": {"name": block.get("name"), "arguments": ""},
            }
            # OpenAI's first tool delta says content null; later ones must not touch it.
            delta = (
                {"tool_calls": [call]}
                if self._role_sent
                else {"content": None, "tool_calls": [call]}
            )
            return self._emit(delta)
        if block.get("type") == "text" and block.get("text"):
            return self._emit({"content": block["text"]})
        return []

    def _message_delta(self, event: dict) -> list[dict]:
        stop = (event.get("delta") or {}).get("stop_reason")
        if stop:
            self._stop_reason = stop
        # Usage here is cumulative: the last value wins, field by field.
        for name, value in (event.get("usage") or {}).items():
            if value is not None:
                self._usage[name] = value
        return []

    def _message_start(self, event: dict) -> list[dict]:
        message = event.get("message") or {}
        self.id = f"chatcmpl-{message.get('id', '')}"
        self.model = message.get("model") or ""
        self._usage = dict(message.get("usage") or {})
        return []

    def _message_stop(self, event: dict) -> list[dict]:
        self.done = True
        chunks = [] if self._role_sent else self._emit({"content": ""})
        chunks.append(self._chunk({}, finish_reason(self._stop_reason)))
        chunks.append(
            {
                "id": self.id,
                "object": "chat.completion.chunk",
                "created": self.created,
                "model": self.model,
                "choices": [],
                "usage": usage(self._usage),
            }
        )
        return chunks

    def _error(self, event: dict) -> list[dict]:
        raise ErrorEvent(event.get("error") or {})

    def _emit(self, delta: dict) -> list[dict]:
        if not self._role_sent:
            self._role_sent = True
            delta = {"role": "assistant", **delta}
        return [self._chunk(delta, None)]

    def _chunk(self, delta: dict, finish: str | None) -> dict:
        return {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            "usage": None,
        }


# What `StreamTranslator.feed` does for each event type.
_STEPS: dict[str, Callable[[StreamTranslator, dict], list[dict]]] = {
    "content_block_delta": StreamTranslator._block_delta,
    "content_block_start": StreamTranslator._block_start,
    "message_delta": StreamTranslator._message_delta,
    "message_start": StreamTranslator._message_start,
    "message_stop": StreamTranslator._message_stop,
    "error": StreamTranslator._error,
}
