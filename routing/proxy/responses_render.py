"""A chat completion rendered as a Responses API answer, for targets that do not speak it.

`response_from_completion()` turns a `chat.completion` into a Response object;
`StreamRenderer` turns `chat.completion.chunk`s into the Responses event sequence:
`response.created`, `response.in_progress`, then per output item `output_item.added`, its
content part or arguments as deltas, their `.done` events and `output_item.done`, and last
`response.completed` (or `response.incomplete` when the output stopped at its cap).
"""

from __future__ import annotations

import time
import uuid

from routing.proxy.responses_request import ResponsesRequest

# Chat finish reasons that leave a Response incomplete, and the reason it then gives.
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


def responses_usage(usage: object) -> dict | None:
    """A chat completion's usage in the Responses API's terms."""
    if not isinstance(usage, dict):
        return None
    prompt = int(usage.get("prompt_tokens") or 0)
    completion = int(usage.get("completion_tokens") or 0)
    prompt_details = usage.get("prompt_tokens_details") or {}
    completion_details = usage.get("completion_tokens_details") or {}
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": int(prompt_details.get("cached_tokens") or 0)},
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": int(completion_details.get("reasoning_tokens") or 0)
        },
        "total_tokens": prompt + completion,
    }


def chat_usage(usage: object) -> dict | None:
    """A Response's usage in a chat completion's terms (what the exchange records)."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("input_tokens_details") or {}
    output_details = usage.get("output_tokens_details") or {}
    return {
        "prompt_tokens": usage.get("input_tokens"),
        "completion_tokens": usage.get("output_tokens"),
        "prompt_tokens_details": {"cached_tokens": details.get("cached_tokens") or 0},
        "completion_tokens_details": {
            "reasoning_tokens": output_details.get("reasoning_tokens") or 0
        },
    }


def shell(request: ResponsesRequest, *, response_id: str, created_at: int, model: str) -> dict:
    """A Response object with no output yet, echoing the request's settings."""
    raw = request.raw
    return {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": "in_progress",
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": raw.get("instructions"),
        "max_output_tokens": raw.get("max_output_tokens"),
        "model": model,
        "output": [],
        "parallel_tool_calls": raw.get("parallel_tool_calls", True),
        "previous_response_id": None,
        "reasoning": {"effort": None, "summary": None},
        "store": False,  # nothing is stored: a translated answer cannot be continued by id
        "temperature": raw.get("temperature", 1.0),
        "text": raw.get("text") or {"format": {"type": "text"}},
        "tool_choice": raw.get("tool_choice", "auto"),
        "tools": raw.get("tools") or [],
        "top_p": raw.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": None,
        "user": raw.get("user"),
        "metadata": raw.get("metadata") or {},
    }


def finished(response: dict, finish_reason: str | None, usage: object) -> dict:
    reason = _INCOMPLETE.get(finish_reason or "")
    response["status"] = "incomplete" if reason else "completed"
    response["incomplete_details"] = {"reason": reason} if reason else None
    response["usage"] = responses_usage(usage)
    return response


def text_part(text: str) -> dict:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message_item(item_id: str, text: str, *, status: str = "completed") -> dict:
    content = [text_part(text)] if status == "completed" else []
    return {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": content,
    }


def call_item(item_id: str, call: dict, *, status: str = "completed") -> dict:
    function = call.get("function") or {}
    return {
        "type": "function_call",
        "id": item_id,
        "call_id": call.get("id") or "",
        "name": function.get("name") or "",
        "arguments": (function.get("arguments") or "") if status == "completed" else "",
        "status": status,
    }


def response_from_completion(completion: dict, request: ResponsesRequest) -> dict:
    response = shell(
        request,
        response_id=new_id("resp"),
        created_at=int(completion.get("created") or time.time()),
        model=str(completion.get("model") or ""),
    )
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    if message.get("content"):
        response["output"].append(message_item(new_id("msg"), message["content"]))
    for call in message.get("tool_calls") or ():
        response["output"].append(call_item(new_id("fc"), call))
    return finished(response, choice.get("finish_reason"), completion.get("usage"))


class StreamRenderer:
    """The Responses events for a chat stream, one chunk at a time."""

    def __init__(self, request: ResponsesRequest) -> None:
        self.request = request
        self.response: dict = {}
        self.sequence = 0
        self.text: dict | None = None  # the open message item: {"id", "index", "text"}
        self.calls: dict[int, dict] = {}  # open function_call items by chat tool-call index
        self.items: list[dict | None] = []  # finished output items, by output index
        self.finish_reason: str | None = None
        self.usage: object = None

    def _event(self, kind: str, **fields: object) -> dict:
        event = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return event

    def opening(self, first: dict) -> list[dict]:
        self.response = shell(
            self.request,
            response_id=new_id("resp"),
            created_at=int(first.get("created") or time.time()),
            model=str(first.get("model") or ""),
        )
        return [
            self._event("response.created", response=dict(self.response)),
            self._event("response.in_progress", response=dict(self.response)),
        ]

    def take(self, chunk: dict) -> list[dict]:
        if chunk.get("usage"):
            self.usage = chunk["usage"]
        events: list[dict] = []
        for choice in (chunk.get("choices") or ())[:1]:
            delta = choice.get("delta") or {}
            content = delta.get("content")
            if isinstance(content, str) and content and not self.calls:
                events += self._text(content)
            for call in delta.get("tool_calls") or ():
                events += self._call(call)
            if choice.get("finish_reason"):
                self.finish_reason = choice["finish_reason"]
        return events

    def _open(self) -> int:
        self.items.append(None)
        return len(self.items) - 1

    def _text(self, content: str) -> list[dict]:
        events: list[dict] = []
        if self.text is None:
            self.text = {"id": new_id("msg"), "index": self._open(), "text": ""}
            item_id, index = self.text["id"], self.text["index"]
            events.append(
                self._event(
                    "response.output_item.added",
                    output_index=index,
                    item=message_item(item_id, "", status="in_progress"),
                )
            )
            events.append(
                self._event(
                    "response.content_part.added",
                    item_id=item_id,
                    output_index=index,
                    content_index=0,
                    part=text_part(""),
                )
            )
        if content:
            self.text["text"] += content
            events.append(
                self._event(
                    "response.output_text.delta",
                    item_id=self.text["id"],
                    output_index=self.text["index"],
                    content_index=0,
                    delta=content,
                    logprobs=[],
                )
            )
        return events

    def _close_text(self) -> list[dict]:
        text = self.text
        if text is None:
            return []
        self.text = None
        item_id, index = text["id"], text["index"]
        item = message_item(item_id, text["text"])
        self.items[index] = item
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        return [
            self._event("response.output_text.done", **where, text=text["text"], logprobs=[]),
            self._event("response.content_part.done", **where, part=text_part(text["text"])),
            self._event("response.output_item.done", output_index=index, item=item),
        ]

    def _call(self, delta: dict) -> list[dict]:
        events = self._close_text()
        position = delta.get("index", 0)
        function = delta.get("function") or {}
        call = self.calls.get(position)
        if call is None:
            call = {
                "id": new_id("fc"),
                "index": self._open(),
                "call": {"id": delta.get("id"), "function": {"name": function.get("name")}},
                "arguments": "",
            }
            self.calls[position] = call
            item = call_item(call["id"], call["call"], status="in_progress")
            events.append(
                self._event("response.output_item.added", output_index=call["index"], item=item)
            )
        if function.get("arguments"):
            call["arguments"] += function["arguments"]
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=call["id"],
                    output_index=call["index"],
                    delta=function["arguments"],
                )
            )
        return events

    def closing(self) -> list[dict]:
        events = self._close_text()
        for call in self.calls.values():
            call["call"]["function"]["arguments"] = call["arguments"]
            item = call_item(call["id"], call["call"])
            self.items[call["index"]] = item
            where = {"item_id": call["id"], "output_index": call["index"]}
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    **where,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
            events.append(
                self._event("response.output_item.done", output_index=call["index"], item=item)
            )
        self.calls = {}
        response = finished(self.response, self.finish_reason, self.usage)
        response["output"] = [item for item in self.items if item is not None]
        kind = "response.incomplete" if response["status"] == "incomplete" else "response.completed"
        return [*events, self._event(kind, response=response)]
