"""An offline provider: deterministic answers with no network, for `make run`, demos and tests.

The answer is `[stub:<model>] ` followed by the first words of the last user message.
With tools on offer (and `tool_choice` not "none") it calls one instead (the one
`tool_choice` names, else the first), with arguments valid against the tool's parameters
schema, unless the conversation just delivered a tool result and no call is required:
then it answers in text, so an SDK's tool loop finishes. `response_format` is honoured:
`json_object` gives a JSON object, `json_schema` a value valid against its schema
(`providers/schema_instance.py`), so structured-output clients parse it. `n` gives that
many choices. Usage is the `providers.tokens` estimate. `Target.stub_delay_ms` waits
before the answer and between streamed chunks, to make latency visible in dashboards and
to exercise timeouts.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import httpx

from providers.base import Target
from providers.schema_instance import minimal_instance
from providers.tokens import estimate_prompt_tokens, estimate_tokens

ECHO_WORDS = 12
MAX_CHOICES = 128  # OpenAI's own bound on `n`
_WORD = re.compile(r"\S+\s*")


@dataclass(frozen=True)
class _Answer:
    content: str | None
    tool_call: dict | None
    prompt_tokens: int
    completion_tokens: int  # of one choice
    truncated: bool = False
    n: int = 1

    @property
    def finish_reason(self) -> str:
        if self.truncated:
            return "length"
        return "tool_calls" if self.tool_call else "stop"

    @property
    def usage(self) -> dict:
        completion = self.completion_tokens * self.n
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }

    def tool_call_of(self, index: int) -> dict | None:
        """Each choice's call has its own id, as a model's would."""
        if self.tool_call is None or index == 0:
            return self.tool_call
        return {**self.tool_call, "id": f"{self.tool_call['id'][:-3]}{index:03d}"}


class StubProvider:
    """Kind `stub`."""

    async def complete(self, target: Target, body: dict, client: httpx.AsyncClient) -> dict:
        answer = _answer(target, body)
        await _pause(target)
        return {
            "id": _new_id(),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": target.model,
            "choices": [_choice(answer, index) for index in range(answer.n)],
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
        await _pause(target)
        for index in range(answer.n):
            for delta, finish in _deltas(answer, index):
                choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
                yield {**head, "choices": [choice], "usage": None}
                if finish is None:
                    await _pause(target)
        yield {**head, "choices": [], "usage": answer.usage}


def _choice(answer: _Answer, index: int) -> dict:
    message: dict = {"role": "assistant", "content": answer.content, "refusal": None}
    call = answer.tool_call_of(index)
    if call:
        message["tool_calls"] = [call]
    return {
        "index": index,
        "message": message,
        "logprobs": None,
        "finish_reason": answer.finish_reason,
    }


def _deltas(answer: _Answer, index: int) -> Iterator[tuple[dict, str | None]]:
    """One choice's stream: its deltas, then the one that carries its finish reason."""
    call = answer.tool_call_of(index)
    if call:
        function = call["function"]
        opening = {**call, "index": 0, "function": {"name": function["name"], "arguments": ""}}
        yield {"role": "assistant", "content": None, "tool_calls": [opening]}, None
        yield {"tool_calls": [{"index": 0, "function": {"arguments": function["arguments"]}}]}, None
    else:
        yield {"role": "assistant", "content": ""}, None
        for word in _WORD.findall(answer.content or ""):
            yield {"content": word}, None
    yield {}, answer.finish_reason


async def _pause(target: Target) -> None:
    if target.stub_delay_ms:
        await asyncio.sleep(target.stub_delay_ms / 1000)


def _new_id() -> str:
    return f"chatcmpl-stub{uuid.uuid4().hex[:24]}"


def _choices_wanted(body: dict) -> int:
    n = body.get("n")
    if isinstance(n, int) and not isinstance(n, bool) and n > 1:
        return min(n, MAX_CHOICES)
    return 1


def _answer(target: Target, body: dict) -> _Answer:
    messages = body.get("messages") or []
    prompt_tokens = estimate_prompt_tokens(messages)
    n = _choices_wanted(body)
    tool = _tool_to_call(body, messages)
    if tool is not None:
        function = tool.get("function") or {}
        name = function.get("name") or "tool"
        arguments = _json(minimal_instance(function.get("parameters") or {"type": "object"}))
        digest = hashlib.sha256(f"{name}\0{arguments}\0{len(messages)}".encode()).hexdigest()
        call = {
            "id": f"call_stub{digest[:20]}",
            "type": "function",
            "function": {"name": name, "arguments": arguments},
        }
        return _Answer(None, call, prompt_tokens, estimate_tokens(name + arguments), n=n)
    echo = _echo(messages)
    content = _structured(body.get("response_format"), target, echo)
    if content is None:
        content = f"[stub:{target.model}] {echo}"
    cap = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(cap, int) and cap > 0 and estimate_tokens(content) > cap:
        # Like a real model, stop at the output cap (about four characters a token).
        content = content[: cap * 4]
        return _Answer(content, None, prompt_tokens, cap, truncated=True, n=n)
    return _Answer(content, None, prompt_tokens, estimate_tokens(content), n=n)


def _structured(response_format: object, target: Target, echo: str) -> str | None:
    """The content `response_format` asks for (None: plain text)."""
    if not isinstance(response_format, dict):
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        return _json({"stub": target.model, "echo": echo})
    if kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return _json(minimal_instance(schema if isinstance(schema, dict) else {"type": "object"}))
    return None


def _json(value: object) -> str:
    # Spaces after separators, as models write it: a stream then comes in several chunks.
    return json.dumps(value, ensure_ascii=False)


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
