"""An offline provider: deterministic answers with no network, for `make run`, demos and tests.

The answer is `[stub:<model>] ` followed by the first words of the last user message.
With tools on offer (and `tool_choice` not "none") it calls one instead, with arguments
filled from the tool's JSON schema, unless the conversation just delivered a tool result:
then it answers in text, so an SDK's tool loop finishes. Usage is the `providers.tokens`
estimate. `Target.stub_delay_ms` waits before the answer and between streamed chunks,
to make latency visible in dashboards and to exercise timeouts.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import orjson

from providers.base import Target
from providers.tokens import estimate_prompt_tokens, estimate_tokens

ECHO_WORDS = 12
_WORD = re.compile(r"\S+\s*")
_PLACEHOLDERS = {
    "string": "stub",
    "integer": 0,
    "number": 0,
    "boolean": False,
    "array": [],
    "object": {},
    "null": None,
}


@dataclass(frozen=True)
class _Answer:
    content: str | None
    tool_call: dict | None
    prompt_tokens: int
    completion_tokens: int
    truncated: bool = False

    @property
    def finish_reason(self) -> str:
        if self.truncated:
            return "length"
        return "tool_calls" if self.tool_call else "stop"

    @property
    def usage(self) -> dict:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.prompt_tokens + self.completion_tokens,
        }


class StubProvider:
    """Kind `stub`."""

    async def complete(self, target: Target, body: dict, client: httpx.AsyncClient) -> dict:
        answer = _answer(target, body)
        await _pause(target)
        message: dict = {"role": "assistant", "content": answer.content, "refusal": None}
        if answer.tool_call:
            message["tool_calls"] = [answer.tool_call]
        return {
            "id": _new_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": target.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": answer.finish_reason,
                }
            ],
            "usage": answer.usage,
        }

    async def stream(
        self, target: Target, body: dict, client: httpx.AsyncClient
    ) -> AsyncIterator[dict]:
        answer = _answer(target, body)
        head = {
            "id": _new_id(),
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": target.model,
        }

        def chunk(delta: dict, finish: str | None = None) -> dict:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return {**head, "choices": [choice], "usage": None}

        await _pause(target)
        if answer.tool_call:
            call = answer.tool_call
            function = call["function"]
            opening = {**call, "index": 0, "function": {"name": function["name"], "arguments": ""}}
            yield chunk({"role": "assistant", "content": None, "tool_calls": [opening]})
            await _pause(target)
            fragment = {"index": 0, "function": {"arguments": function["arguments"]}}
            yield chunk({"tool_calls": [fragment]})
        else:
            yield chunk({"role": "assistant", "content": ""})
            for word in _WORD.findall(answer.content or ""):
                await _pause(target)
                yield chunk({"content": word})
        yield chunk({}, answer.finish_reason)
        yield {**head, "choices": [], "usage": answer.usage}


async def _pause(target: Target) -> None:
    if target.stub_delay_ms:
        await asyncio.sleep(target.stub_delay_ms / 1000)


def _new_id() -> str:
    return f"chatcmpl-stub{uuid.uuid4().hex[:24]}"


def _answer(target: Target, body: dict) -> _Answer:
    messages = body.get("messages") or []
    prompt_tokens = estimate_prompt_tokens(messages)
    tool = _tool_to_call(body, messages)
    if tool is not None:
        function = tool.get("function") or {}
        name = function.get("name") or "tool"
        arguments = orjson.dumps(_placeholder_object(function.get("parameters") or {})).decode()
        digest = hashlib.sha256(f"{name}\0{arguments}\0{len(messages)}".encode()).hexdigest()
        call = {
            "id": f"call_stub{digest[:20]}",
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return _Answer(None, call, prompt_tokens, estimate_tokens(name + arguments))
    content = f"[stub:{target.model}] {_echo(messages)}"
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(cap, int) and cap > 0 and estimate_tokens(content) > cap:
        # Like a real model, stop at the output cap (about four characters a token).
        content = content[: cap * 4]
        return _Answer(content, None, prompt_tokens, cap, truncated=True)
    return _Answer(content, None, prompt_tokens, estimate_tokens(content))


def _tool_to_call(body: dict, messages: list) -> dict | None:
    tools = [t for t in body.get("tools") or () if isinstance(t, dict)]
    choice = body.get("tool_choice")
    if not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        wanted = (choice.get("function") or {}).get("name")
        for tool in tools:
            if (tool.get("function") or {}).get("name") == wanted:
                return tool
    # After a tool result a model would normally answer in words; only a forced choice
    # calls again (otherwise an SDK's tool loop would never end).
    if messages and messages[-1].get("role") == "tool" and choice != "required":
        return None
    return tools[0]


def _placeholder_object(schema: dict) -> dict:
    """Required properties with a value of the declared type: enough for strict SDK parsing."""
    properties = schema.get("properties") or {}
    result = {}
    for name in schema.get("required") or ():
        spec = properties.get(name) or {}
        if spec.get("enum"):
            result[name] = spec["enum"][0]
            continue
        kind = spec.get("type", "string")
        if isinstance(kind, list):
            kind = next((k for k in kind if k != "null"), "null")
        result[name] = _placeholder_object(spec) if kind == "object" else _PLACEHOLDERS.get(kind)
    return result


def _echo(messages: list) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(
                p.get("text") or ""
                for p in content
                if isinstance(p, dict) and p.get("type") == "text"
            )
        words = str(content or "").split()
        if words:
            text = " ".join(words[:ECHO_WORDS])
            return text + " …" if len(words) > ECHO_WORDS else text
    return "(no user message)"
