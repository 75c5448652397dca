"""The fake OpenAI server's `POST /v1/responses` (and Azure's `/openai/responses`): the
Responses API's real wire format, a Response object or its server-sent events (each with
`event: <type>` and a `sequence_number`). The model name picks the behaviour, as for chat
(tests/fakes/upstreams.py), plus:

| model       | behaviour                                                              |
|-------------|------------------------------------------------------------------------|
| incomplete  | stops at the output cap: status `incomplete`, `response.incomplete`     |
| failed      | status `failed` with an error: `response.failed`                        |
| cached      | reports cached input tokens and reasoning tokens                        |
"""

from __future__ import annotations

from typing import Any

import orjson

from tests.fakes.server import Exchange
from tests.fakes.upstreams import (
    COMPLETION_TOKENS,
    CREATED,
    FAILURES,
    OPENAI_GREETING,
    PROMPT_TOKENS,
    TOOL_INPUT,
    split3,
)

CACHED_TOKENS = 8
REASONING_TOKENS = 5
FAILED_ERROR = {"code": "server_error", "message": "fake response failure"}


def is_responses(path: str) -> bool:
    return path.split("?")[0].endswith("/responses")


def _last_text(given: object) -> str:
    if isinstance(given, str):
        return given
    for item in reversed(given if isinstance(given, list) else []):
        if item.get("type") == "function_call_output":
            return str(item.get("output"))
        content = item.get("content")
        if item.get("role") == "user":
            if isinstance(content, str):
                return content
            return " ".join(p.get("text", "") for p in content or () if "text" in p)
    return ""


def _usage(model: str) -> dict:
    cached = CACHED_TOKENS if model == "cached" else 0
    reasoning = REASONING_TOKENS if model == "cached" else 0
    return {
        "input_tokens": PROMPT_TOKENS,
        "input_tokens_details": {"cached_tokens": cached},
        "output_tokens": COMPLETION_TOKENS,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS,
    }


def _output(model: str, body: dict) -> list[dict]:
    given = body.get("input")
    answered = isinstance(given, list) and any(
        isinstance(i, dict) and i.get("type") == "function_call_output" for i in given
    )
    if model == "tools" and body.get("tools") and not answered:
        return [
            {
                "type": "function_call",
                "id": f"fc_fake{i}",
                "call_id": f"call_fake{i}",
                "name": tool["name"],
                "arguments": orjson.dumps(TOOL_INPUT).decode(),
                "status": "completed",
            }
            for i, tool in enumerate(body["tools"][:2])
        ]
    text = f"{OPENAI_GREETING} {_last_text(given)}"
    if model == "incomplete":
        text = text[:10]
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return [
        {
            "type": "message",
            "id": "msg_fake",
            "status": "incomplete" if model == "incomplete" else "completed",
            "role": "assistant",
            "content": [part],
        }
    ]


def response_object(model: str, body: dict, *, status: str = "completed") -> dict:
    done = status != "in_progress"
    return {
        "id": "resp_fake",
        "object": "response",
        "created_at": CREATED,
        "status": status,
        "background": False,
        "error": FAILED_ERROR if status == "failed" else None,
        "incomplete_details": {"reason": "max_output_tokens"} if status == "incomplete" else None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": _output(model, body) if done and status != "failed" else [],
        "parallel_tool_calls": True,
        "previous_response_id": body.get("previous_response_id"),
        "store": body.get("store", True),
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": _usage(model) if done else None,
        "metadata": {},
    }


def _final_status(model: str) -> str:
    return {"incomplete": "incomplete", "failed": "failed"}.get(model, "completed")


async def handle_responses(ex: Exchange) -> None:
    body: dict[str, Any] = ex.body or {}
    model = str(body.get("model") or "")
    if model in FAILURES:
        status = FAILURES[model]
        error = {"message": f"fake upstream failure {status}", "type": "server_error"}
        if status == 400:
            error.update(type="invalid_request_error", param="input", code="invalid_value")
        await ex.json(status, {"error": {"param": None, "code": None, **error}})
        return
    if not body.get("stream"):
        await ex.json(200, response_object(model, body, status=_final_status(model)))
        return
    await _stream(ex, model, body)


def _item_events(index: int, item: dict) -> list[dict]:
    """The events that build one output item, as OpenAI sends them."""
    if item["type"] == "function_call":
        opened = {**item, "arguments": "", "status": "in_progress"}
        where = {"item_id": item["id"], "output_index": index}
        return [
            {"type": "response.output_item.added", "output_index": index, "item": opened},
            *(
                {"type": "response.function_call_arguments.delta", **where, "delta": piece}
                for piece in split3(item["arguments"])
            ),
            {
                "type": "response.function_call_arguments.done",
                **where,
                "arguments": item["arguments"],
            },
            {"type": "response.output_item.done", "output_index": index, "item": item},
        ]
    part = item["content"][0]
    where = {"item_id": item["id"], "output_index": index, "content_index": 0}
    empty = {**part, "text": ""}
    return [
        {
            "type": "response.output_item.added",
            "output_index": index,
            "item": {**item, "status": "in_progress", "content": []},
        },
        {"type": "response.content_part.added", **where, "part": empty},
        *(
            {"type": "response.output_text.delta", **where, "delta": piece, "logprobs": []}
            for piece in split3(part["text"])
        ),
        {"type": "response.output_text.done", **where, "text": part["text"], "logprobs": []},
        {"type": "response.content_part.done", **where, "part": part},
        {"type": "response.output_item.done", "output_index": index, "item": item},
    ]


async def _stream(ex: Exchange, model: str, body: dict) -> None:
    opening = response_object(model, body, status="in_progress")
    events: list[dict] = [
        {"type": "response.created", "response": opening},
        {"type": "response.in_progress", "response": opening},
    ]
    final = response_object(model, body, status=_final_status(model))
    for index, item in enumerate(final["output"]):
        events += _item_events(index, item)
    events.append({"type": f"response.{final['status']}", "response": final})
    await ex.start_sse()
    if model in ("error-at-start", "error-after-200"):
        events = events[: 2 if model == "error-at-start" else 5]
        error = {"type": "error", "code": "server_error", "message": "fake failure mid-stream"}
        events.append({**error, "param": None})
    if model == "midstream-drop":
        events = events[:5]
    for sequence, event in enumerate(events):
        await ex.sse({**event, "sequence_number": sequence}, event=event["type"])
    if model != "midstream-drop":
        await ex.end()
