"""Parse a Responses API request (`POST /v1/responses`) and state it as a chat completion.

The Responses body itself goes to OpenAI-family targets as it is (`ResponsesRequest.raw`).
Its chat-completion equivalent (`ResponsesRequest.chat`) is what the rest of the pipeline
reads: the prompt counted by admission and policies, the audit row's prompt, and, for
targets that do not speak the Responses API (the stub, Anthropic), the request sent to them
through their chat adapter. What the chat form cannot say (stored conversations, built-in
tools, files, reasoning items) is named in `unsupported`: such a request may still be
passed through, but not translated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway_project.lib import errors
from routing.proxy.request import FORBIDDEN_FIELDS, ChatRequest, parse_chat_request

_ROLES = frozenset({"user", "system", "developer", "assistant"})
_TEXT_PARTS = frozenset({"input_text", "output_text", "text"})
# Stateful or server-side features: only the upstream that holds the state can serve them.
_STATEFUL = ("previous_response_id", "conversation", "prompt")
# Copied as they are into the chat form (same meaning in both APIs).
_SAME = ("temperature", "top_p", "parallel_tool_calls", "user", "top_logprobs", "x-gateway")


@dataclass
class ResponsesRequest:
    raw: dict  # what an OpenAI-family target gets (the gateway's hints taken out)
    chat: ChatRequest  # the same request as a chat completion
    unsupported: str | None  # why it cannot be translated to a chat completion (None: it can)


class _Untranslatable(Exception):
    pass


def _text_of(content: object, where: str) -> str:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _Untranslatable(f"{where} that is not a string or a list of parts")
    texts = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _TEXT_PARTS:
            raise _Untranslatable(f"{where} parts of type '{kind}'")
        texts.append(str(part.get("text") or ""))
    return "".join(texts)


def _user_content(content: object, where: str) -> str | list:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise _Untranslatable(f"{where} that is not a string or a list of parts")
    parts: list[dict] = []
    for part in content:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in _TEXT_PARTS:
            parts.append({"type": "text", "text": str(part.get("text") or "")})
        elif kind == "input_image" and isinstance(part.get("image_url"), str):
            image = {"url": part["image_url"], "detail": part.get("detail") or "auto"}
            parts.append({"type": "image_url", "image_url": image})
        else:
            raise _Untranslatable(f"{where} parts of type '{kind}'")
    return parts


def _item_message(item: dict, index: int, messages: list[dict]) -> None:
    kind = item.get("type") or "message"
    where = f"input[{index}]"
    if kind == "message":
        role = item.get("role")
        if role not in _ROLES:
            raise errors.bad_request(
                f"{where}.role must be one of {', '.join(sorted(_ROLES))}; got {role!r}.",
                param=f"{where}.role",
            )
        content = item.get("content")
        if role == "user":
            messages.append({"role": role, "content": _user_content(content, "input content")})
        else:
            messages.append({"role": role, "content": _text_of(content, f"{role} content")})
    elif kind == "function_call":
        call = {
            "id": str(item.get("call_id") or ""),
            "type": "function",
            "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""},
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = _text_of(item.get("output"), "function call outputs")
        messages.append(
            {"role": "tool", "tool_call_id": str(item.get("call_id") or ""), "content": output}
        )
    else:
        raise _Untranslatable(f"input items of type '{kind}'")


def _messages(body: dict) -> list[dict]:
    """The chat messages the input says; raises _Untranslatable for what has no equivalent."""
    messages: list[dict] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    elif instructions is not None and not isinstance(instructions, str):
        raise _Untranslatable("'instructions' that are not a string")
    given = body.get("input")
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    elif isinstance(given, list):
        for index, item in enumerate(given):
            if isinstance(item, str):
                messages.append({"role": "user", "content": item})
            elif isinstance(item, dict):
                _item_message(item, index, messages)
            else:
                raise errors.bad_request(f"input[{index}] must be an object.", param="input")
    return messages


def _text_lenient(content: object) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            str(p.get("text") or "") for p in content if isinstance(p, dict) and "text" in p
        )
    return ""


def _lenient_messages(body: dict) -> list[dict]:
    """Every text of an input that cannot be translated, as chat messages: what its prompt
    is counted and audited as (the upstream gets the input itself)."""
    texts = [_text_lenient(body.get("instructions"))]
    given = body.get("input")
    items = given if isinstance(given, list) else [given]
    for item in items:
        if isinstance(item, dict):
            texts.append(_text_lenient(item.get("content") or item.get("output")))
            texts.append(str(item.get("arguments") or ""))
        else:
            texts.append(_text_lenient(item))
    return [{"role": "user", "content": "\n".join(text for text in texts if text)}]


def _tools(body: dict) -> list[dict] | None:
    tools = body.get("tools")
    if tools is None:
        return None
    if not isinstance(tools, list):
        raise errors.bad_request("'tools' must be an array.", param="tools")
    chat_tools = []
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise _Untranslatable(f"tools of type '{kind}'")
        function = {
            k: tool[k] for k in ("name", "description", "parameters", "strict") if k in tool
        }
        chat_tools.append({"type": "function", "function": function})
    return chat_tools


def _tool_choice(choice: object) -> object:
    if isinstance(choice, dict):
        if choice.get("type") != "function":
            raise _Untranslatable(f"tool_choice of type '{choice.get('type')}'")
        return {"type": "function", "function": {"name": choice.get("name")}}
    return choice


def _response_format(text: object) -> dict | None:
    spec = text.get("format") if isinstance(text, dict) else None
    kind = spec.get("type") if isinstance(spec, dict) else None
    if spec is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        assert isinstance(spec, dict)
        schema = {k: spec[k] for k in ("name", "schema", "strict", "description") if k in spec}
        return {"type": "json_schema", "json_schema": schema}
    raise _Untranslatable(f"text.format of type '{kind}'")


def _chat_body(body: dict) -> dict:
    """The request as a chat completion; raises _Untranslatable."""
    for name in _STATEFUL:
        if body.get(name) is not None:
            raise _Untranslatable(f"'{name}'")
    if body.get("background"):
        raise _Untranslatable("'background'")
    chat: dict = {"messages": _messages(body)}
    tools = _tools(body)
    if tools is not None:
        chat["tools"] = tools
    if body.get("tool_choice") is not None:
        chat["tool_choice"] = _tool_choice(body["tool_choice"])
    response_format = _response_format(body.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    return chat


def _check(body: dict) -> None:
    forbidden = FORBIDDEN_FIELDS.intersection(body)
    if forbidden:
        name = sorted(forbidden)[0]
        raise errors.bad_request(
            f"'{name}' is not accepted: the gateway chooses the upstream and holds its credentials.",
            param=name,
        )
    given = body.get("input")
    if given is not None and not isinstance(given, str | list):
        raise errors.bad_request("'input' must be a string or an array of items.", param="input")
    if given is None and not any(body.get(name) is not None for name in _STATEFUL):
        raise errors.bad_request("'input' is required.", param="input")
    cap = body.get("max_output_tokens")
    if cap is not None and (not isinstance(cap, int) or isinstance(cap, bool) or cap < 1):
        raise errors.bad_request(
            "'max_output_tokens' must be an integer of at least 1.", param="max_output_tokens"
        )


def parse_responses_request(
    body: dict, *, route_header: str | None, headers: Mapping[str, str] | None = None
) -> ResponsesRequest:
    _check(body)
    unsupported: str | None = None
    try:
        chat = _chat_body(body)
    except _Untranslatable as exc:
        unsupported = str(exc)
        chat = {"messages": _lenient_messages(body)}
    if not chat["messages"]:
        chat["messages"] = [{"role": "user", "content": ""}]
    chat.update({name: body[name] for name in _SAME if name in body})
    if "x_gateway" in body:
        chat["x_gateway"] = body["x_gateway"]
    chat["model"] = body.get("model")
    chat["stream"] = body.get("stream")
    if body.get("max_output_tokens") is not None:
        chat["max_completion_tokens"] = body["max_output_tokens"]
    parsed = parse_chat_request(chat, route_header=route_header, headers=headers)
    raw = {k: v for k, v in body.items() if k not in ("x-gateway", "x_gateway")}
    return ResponsesRequest(raw=raw, chat=parsed, unsupported=unsupported)
