"""Anthropic Messages request (`POST /v1/messages`) -> the internal OpenAI chat body.

The reverse of providers/anthropic/translate.py: the gateway's stages (routing, limits,
cache, upstream, audit) all work on an OpenAI chat body, so a Messages request is
translated once, on the way in, and every target serves it (an Anthropic target through
providers/anthropic, which translates it back). Pure functions, no I/O; what cannot be
expressed is a 400 (`errors.bad_request`), rendered in Anthropic's envelope by the dialect.
Dropped, with no OpenAI equivalent: `top_k`, `thinking`, `cache_control`, `service_tier`,
citations.
"""

from __future__ import annotations

import orjson

from gateway_project.lib import errors
from routing.proxy.request import FORBIDDEN_FIELDS

# Carried over as they are, so that the chat parser refuses or interprets them.
_CARRIED = ("stream", "temperature", "top_p", "x-gateway", "x_gateway", *FORBIDDEN_FIELDS)
_TOOL_CHOICES = {"auto": "auto", "any": "required", "none": "none"}


def to_chat_body(body: dict) -> dict:
    """The OpenAI chat body that asks what the Messages request `body` asks."""
    max_tokens = body.get("max_tokens")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise errors.bad_request("max_tokens: a positive integer is required.", param="max_tokens")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise errors.bad_request("messages: at least one message is required.", param="messages")
    chat: dict = {"model": body.get("model"), "max_tokens": max_tokens}
    chat["messages"] = _system(body.get("system")) + _conversation(messages)
    for name in _CARRIED:
        if name in body:
            chat[name] = body[name]
    stop = body.get("stop_sequences")
    if stop:
        if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop):
            raise errors.bad_request("stop_sequences: an array of strings.", param="stop_sequences")
        chat["stop"] = stop
    metadata = body.get("metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("user_id"), str):
        chat["user"] = metadata["user_id"]
    _tools(body, chat)
    return chat


def _system(system: object) -> list[dict]:
    if system is None or system == "" or system == []:
        return []
    return [{"role": "system", "content": _text(system, "system")}]


def _text(content: object, where: str) -> str:
    """A string, or text blocks joined (the only content `system` and tool results keep)."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise errors.bad_request(f"{where}: a string or an array of blocks.", param=where)
    texts = []
    for j, block in enumerate(content):
        if not isinstance(block, dict) or block.get("type") != "text":
            raise errors.bad_request(
                f"{where}[{j}]: only text blocks are supported here.", param=f"{where}[{j}]"
            )
        texts.append(str(block.get("text") or ""))
    return "\n".join(texts)


def _conversation(messages: list) -> list[dict]:
    out: list[dict] = []
    for i, message in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(message, dict):
            raise errors.bad_request(f"{where}: an object.", param=where)
        role, content = message.get("role"), message.get("content")
        if role not in ("user", "assistant"):
            raise errors.bad_request(
                f"{where}.role: 'user' or 'assistant', got {role!r}.", param=f"{where}.role"
            )
        if isinstance(content, str):
            out.append({"role": role, "content": content})
            continue
        if not isinstance(content, list) or not all(isinstance(b, dict) for b in content):
            raise errors.bad_request(
                f"{where}.content: a string or an array of content blocks.",
                param=f"{where}.content",
            )
        if role == "user":
            out.extend(_user_turn(content, where))
        else:
            out.append(_assistant_turn(content, where))
    return out


def _user_turn(blocks: list[dict], where: str) -> list[dict]:
    """Tool results become `tool` messages, first (they answer the previous assistant turn);
    the rest of the turn one user message after them."""
    results: list[dict] = []
    parts: list[dict] = []
    for j, block in enumerate(blocks):
        kind, at = block.get("type"), f"{where}.content[{j}]"
        if kind == "tool_result":
            results.append(_tool_result(block, at))
        elif kind == "text":
            parts.append({"type": "text", "text": str(block.get("text") or "")})
        elif kind == "image":
            parts.append({"type": "image_url", "image_url": {"url": _url(block, at, "image/")}})
        elif kind == "document":
            url = _url(block, at, "application/pdf")
            file = {"file_data": url, "filename": block.get("title") or "document.pdf"}
            parts.append({"type": "file", "file": file})
        else:
            raise errors.bad_request(f"{at}: block type {kind!r} is not supported.", param=at)
    if parts:
        results.append({"role": "user", "content": parts})
    return results


def _tool_result(block: dict, where: str) -> dict:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise errors.bad_request(f"{where}.tool_use_id is required.", param=where)
    content = block.get("content")
    text = "" if content is None else _text(content, f"{where}.content")
    if block.get("is_error"):
        text = f"Error: {text}"
    return {"role": "tool", "tool_call_id": call_id, "content": text}


def _url(block: dict, where: str, accept: str) -> str:
    source = block.get("source")
    if not isinstance(source, dict):
        raise errors.bad_request(f"{where}.source is required.", param=where)
    if source.get("type") == "url" and isinstance(source.get("url"), str):
        return source["url"]
    media_type, data = source.get("media_type"), source.get("data")
    if (
        source.get("type") == "base64"
        and isinstance(media_type, str)
        and media_type.startswith(accept)
        and isinstance(data, str)
        and data
    ):
        return f"data:{media_type};base64,{data}"
    raise errors.bad_request(
        f"{where}.source: a url or base64 source of type {accept}*.", param=where
    )


def _assistant_turn(blocks: list[dict], where: str) -> dict:
    texts: list[str] = []
    calls: list[dict] = []
    for j, block in enumerate(blocks):
        kind, at = block.get("type"), f"{where}.content[{j}]"
        if kind == "text":
            texts.append(str(block.get("text") or ""))
        elif kind == "tool_use":
            if not block.get("id") or not block.get("name"):
                raise errors.bad_request(f"{at}: tool_use needs an id and a name.", param=at)
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {
                    "id": block["id"],
                    "type": "function",
                    "function": {"name": block["name"], "arguments": arguments},
                }
            )
        elif kind not in ("thinking", "redacted_thinking"):
            raise errors.bad_request(f"{at}: block type {kind!r} is not supported.", param=at)
    message: dict = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return message


def _tools(body: dict, chat: dict) -> None:
    tools = body.get("tools")
    if not tools:
        return
    if not isinstance(tools, list):
        raise errors.bad_request("tools: an array.", param="tools")
    chat["tools"] = [_tool(tool, i) for i, tool in enumerate(tools)]
    choice = body.get("tool_choice")
    if choice is None:
        return
    kind = choice.get("type") if isinstance(choice, dict) else None
    if kind == "tool" and isinstance(choice.get("name"), str):
        chat["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    elif kind in _TOOL_CHOICES:
        chat["tool_choice"] = _TOOL_CHOICES[kind]
    else:
        raise errors.bad_request("tool_choice: auto, any, tool or none.", param="tool_choice")
    if choice.get("disable_parallel_tool_use") and kind != "none":
        chat["parallel_tool_calls"] = False


def _tool(tool: object, index: int) -> dict:
    where = f"tools[{index}]"
    if not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
        raise errors.bad_request(f"{where}: a tool with a name.", param=where)
    if tool.get("type") not in (None, "custom"):
        raise errors.bad_request(
            f"{where}: server tools ({tool['type']}) are not supported by this gateway.",
            param=where,
        )
    function: dict = {
        "name": tool["name"],
        "parameters": tool.get("input_schema") or {"type": "object", "properties": {}},
    }
    if tool.get("description"):
        function["description"] = tool["description"]
    return {"type": "function", "function": function}
