"""OpenAI chat request -> Anthropic Messages request, per CONTRACT.md.

Pure functions, no I/O and no Django, so every rule is unit-tested on its own. Fields
the Messages API has no equivalent for (`response_format`, `seed`, `logprobs`,
`frequency_penalty`, ...) are dropped rather than forwarded: Anthropic rejects unknown
fields, so passing them through would fail the whole call. What cannot be expressed
at all (`n` > 1, audio input, non-function tools) is refused with a 400.
"""

from __future__ import annotations

import orjson

from providers.base import UpstreamError


class TranslationError(UpstreamError):
    """The request cannot be expressed for this upstream: the client gets a 400.

    It is an `UpstreamError` with status 400, kind `client_error`, `retryable=False`
    and an OpenAI envelope (`invalid_request_error`, with `param`) in `body`, so the
    proxy returns it exactly as it returns a 400 from the upstream itself.
    """

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(
            message,
            status=400,
            retryable=False,
            kind="client_error",
            body={
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": param,
                    "code": None,
                }
            },
        )
        self.param = param


_TOOL_CHOICES = {"auto": {"type": "auto"}, "none": {"type": "none"}, "required": {"type": "any"}}


def to_messages_request(body: dict, *, model: str, default_max_tokens: int) -> dict:
    """Translate an OpenAI chat request into an Anthropic Messages request for `model`."""
    system, messages = _conversation(body.get("messages") or ())
    max_tokens = body.get("max_completion_tokens") or body.get("max_tokens") or default_max_tokens
    request: dict = {"model": model, "max_tokens": max_tokens, "messages": messages}
    if system:
        request["system"] = system
    n = body.get("n")
    if n is not None and n != 1:
        raise TranslationError("This model can only return one choice (n must be 1).", param="n")
    for name in ("temperature", "top_p", "top_k"):
        if body.get(name) is not None:
            request[name] = body[name]
    stop = body.get("stop")
    if stop:
        sequences = [stop] if isinstance(stop, str) else [s for s in stop if s]
        if sequences:
            request["stop_sequences"] = sequences
    if body.get("user"):
        request["metadata"] = {"user_id": str(body["user"])}
    tools = body.get("tools")
    # tool_choice without tools is dropped: Anthropic refuses it and there is nothing to choose.
    if tools:
        request["tools"] = [_tool(tool, index) for index, tool in enumerate(tools)]
        choice = _tool_choice(body.get("tool_choice"))
        if body.get("parallel_tool_calls") is False and choice["type"] != "none":
            choice["disable_parallel_tool_use"] = True
        if choice != {"type": "auto"}:
            request["tool_choice"] = choice
    return request


def _conversation(source: list | tuple) -> tuple[str, list[dict]]:
    system: list[str] = []
    turns: list[dict] = []
    for i, message in enumerate(source):
        role = message.get("role")
        if role in ("system", "developer"):
            text = _text_only(message.get("content"), f"messages[{i}].content")
            if text:
                system.append(text)
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), i)
        elif role == "assistant":
            blocks = _assistant_blocks(message, i)
        elif role == "tool":
            role, blocks = "user", [_tool_result(message, i)]
        else:
            raise TranslationError(
                f"Role {role!r} is not supported by this model.", param=f"messages[{i}].role"
            )
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    for turn in turns:
        # Anthropic wants tool results before any text in a user turn; a stable sort keeps
        # the order within each group.
        if turn["role"] == "user" and len(turn["content"]) > 1:
            turn["content"].sort(key=lambda block: block["type"] != "tool_result")
    return "\n\n".join(system), turns


def _text_only(content: object, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    texts = []
    for j, part in enumerate(_parts(content, where)):
        if part.get("type") not in ("text", "refusal"):
            raise TranslationError(
                f"Only text is supported in {where}.", param=f"{where}[{j}].type"
            )
        texts.append(part.get("text") or part.get("refusal") or "")
    return "\n".join(t for t in texts if t)


def _parts(content: object, where: str) -> list[dict]:
    if not isinstance(content, list) or not all(isinstance(part, dict) for part in content):
        raise TranslationError(f"{where} must be a string or a list of parts.", param=where)
    return content


def _user_blocks(content: object, i: int) -> list[dict]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    where = f"messages[{i}].content"
    blocks = []
    for j, part in enumerate(_parts(content, where)):
        kind = part.get("type")
        if kind == "text":
            if part.get("text"):
                blocks.append({"type": "text", "text": part["text"]})
        elif kind == "image_url":
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else image
            blocks.append({"type": "image", "source": _source(url, f"{where}[{j}].image_url")})
        elif kind == "file":
            blocks.append(_document(part.get("file") or {}, f"{where}[{j}].file"))
        else:
            raise TranslationError(
                f"Content part type {kind!r} is not supported by this model.",
                param=f"{where}[{j}].type",
            )
    return blocks


def _source(url: object, where: str, *, accept: str = "image/") -> dict:
    """A data URI becomes a base64 source; an http(s) URL is fetched by Anthropic itself."""
    if not isinstance(url, str) or not url:
        raise TranslationError(f"{where} needs a url.", param=where)
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    header, comma, data = url.partition(",")
    media_type, _, encoding = header.removeprefix("data:").partition(";")
    if not (url.startswith("data:") and comma and encoding == "base64" and data):
        raise TranslationError(f"{where} must be an http(s) URL or a base64 data URI.", param=where)
    if not media_type.startswith(accept):
        raise TranslationError(f"{where} has unsupported media type {media_type!r}.", param=where)
    return {"type": "base64", "media_type": media_type, "data": data}


def _document(file: dict, where: str) -> dict:
    # Only inline PDFs map onto a document block; OpenAI file ids mean nothing to Anthropic.
    if not file.get("file_data"):
        raise TranslationError(
            f"{where} must carry file_data (uploaded file ids are not supported).", param=where
        )
    block = {
        "type": "document",
        "source": _source(file["file_data"], f"{where}.file_data", accept="application/pdf"),
    }
    if file.get("filename"):
        block["title"] = file["filename"]
    return block


def _assistant_blocks(message: dict, i: int) -> list[dict]:
    text = _text_only(message.get("content"), f"messages[{i}].content")
    blocks: list[dict] = [{"type": "text", "text": text}] if text else []
    for j, call in enumerate(message.get("tool_calls") or ()):
        where = f"messages[{i}].tool_calls[{j}]"
        function = call.get("function") or {}
        if call.get("type", "function") != "function" or not function.get("name"):
            raise TranslationError(f"{where} must be a function call with a name.", param=where)
        blocks.append(
            {
                "type": "tool_use",
                "id": call.get("id") or f"call_{i}_{j}",
                "name": function["name"],
                "input": _arguments(function.get("arguments"), f"{where}.function.arguments"),
            }
        )
    return blocks


def _arguments(arguments: object, where: str) -> dict:
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments)  # type: ignore[arg-type]  # any type: TypeError is caught
    except (orjson.JSONDecodeError, TypeError) as exc:
        raise TranslationError(f"{where} is not valid JSON.", param=where) from exc
    if not isinstance(value, dict):
        raise TranslationError(f"{where} must encode a JSON object.", param=where)
    return value


def _tool_result(message: dict, i: int) -> dict:
    call_id = message.get("tool_call_id")
    if not call_id:
        raise TranslationError(
            "Tool messages need a tool_call_id.", param=f"messages[{i}].tool_call_id"
        )
    block: dict = {"type": "tool_result", "tool_use_id": call_id}
    text = _text_only(message.get("content"), f"messages[{i}].content")
    if text:
        block["content"] = text
    return block


def _tool(tool: dict, index: int) -> dict:
    function = tool.get("function") or {}
    if tool.get("type") != "function" or not function.get("name"):
        raise TranslationError(
            "Only function tools with a name are supported by this model.",
            param=f"tools[{index}]",
        )
    out = {
        "name": function["name"],
        "input_schema": function.get("parameters") or {"type": "object", "properties": {}},
    }
    if function.get("description"):
        out["description"] = function["description"]
    return out


def _tool_choice(choice: object) -> dict:
    if choice is None:
        return {"type": "auto"}
    if isinstance(choice, str) and choice in _TOOL_CHOICES:
        return dict(_TOOL_CHOICES[choice])
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = (choice.get("function") or {}).get("name")
        if name:
            return {"type": "tool", "name": name}
    raise TranslationError("This tool_choice is not supported by this model.", param="tool_choice")
