"""The internal answer (an OpenAI `chat.completion`) -> an Anthropic Message, and gateway
errors -> Anthropic's error envelope. The reverse of providers/anthropic/convert.py."""

from __future__ import annotations

import orjson
from django.http import HttpResponse

from gateway_project.lib.errors import GatewayError

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
# Anthropic's error types by HTTP status (https://docs.anthropic.com/en/api/errors).
_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


def stop_reason(finish_reason: object) -> str:
    """OpenAI says `stop` for both a natural end and a stop sequence and does not say which
    sequence: a request that set stop sequences gets `end_turn` all the same."""
    return STOP_REASONS.get(finish_reason if isinstance(finish_reason, str) else "", "end_turn")


def message_usage(usage: object) -> dict:
    """OpenAI counts cache reads inside the prompt tokens; Anthropic counts them apart."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = (details.get("cached_tokens") if isinstance(details, dict) else 0) or 0
    prompt = usage.get("prompt_tokens") or 0
    return {
        "input_tokens": max(prompt - cached, 0),
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": cached,
    }


def tool_input(arguments: object) -> dict:
    """A tool call's JSON-string arguments as Anthropic's `input` object ({} if they are not
    a JSON object: an upstream's malformed arguments must not break the whole answer)."""
    if isinstance(arguments, dict):
        return arguments
    try:
        value = orjson.loads(arguments or "{}")  # type: ignore[arg-type]  # TypeError is caught
    except (orjson.JSONDecodeError, TypeError):
        return {}
    return value if isinstance(value, dict) else {}


def message_id(completion_id: object) -> str:
    raw = str(completion_id or "")
    return raw if raw.startswith("msg_") else f"msg_{raw.removeprefix('chatcmpl-')}"


def to_message(result: dict) -> dict:
    """A `chat.completion` (its first choice) as an Anthropic Message."""
    choices = result.get("choices") or [{}]
    choice = choices[0] or {}
    reply = choice.get("message") or {}
    content: list[dict] = []
    if isinstance(reply.get("content"), str) and reply["content"]:
        content.append({"type": "text", "text": reply["content"]})
    for call in reply.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": tool_input(function.get("arguments")),
            }
        )
    return {
        "id": message_id(result.get("id")),
        "type": "message",
        "role": "assistant",
        "model": result.get("model") or "",
        "content": content,
        "stop_reason": stop_reason(choice.get("finish_reason")),
        "stop_sequence": None,
        "usage": message_usage(result.get("usage")),
    }


def render_message(result: dict) -> bytes:
    return orjson.dumps(to_message(result))


def error_body(error: GatewayError) -> dict:
    kind = _ERROR_TYPES.get(error.status)
    if kind is None:
        kind = "api_error" if error.status >= 500 else "invalid_request_error"
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def error_response(error: GatewayError) -> HttpResponse:
    """The failure in Anthropic's envelope, with the gateway's status and headers
    (retry-after, the rate-limit headers, x-should-retry) unchanged."""
    response = HttpResponse(
        orjson.dumps(error_body(error)), status=error.status, content_type="application/json"
    )
    for name, value in error.headers.items():
        response[name] = value
    return response
