"""Parse and check an OpenAI chat request before anything is sent upstream.

The gateway interprets only what it needs (model, messages, stream, its own `x-gateway`
extension) and passes every other field through untouched, so new OpenAI parameters work
on the day they appear. Fields that would redirect the call or its credentials are
refused outright: silently dropping them would hide a misconfigured client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson
from django.conf import settings
from django.http import HttpRequest

from gateway_project.lib import errors, request_body
from routing.proxy.hints import NO_HINTS, RoutingHints, parse_hints

ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})
FORBIDDEN_FIELDS = frozenset(
    {
        "api_base",
        "base_url",
        "api_key",
        "api_version",
        "extra_headers",
        "extra_query",
        "organization",
        "azure_endpoint",
        "azure_ad_token",
        "custom_llm_provider",
    }
)
_INT_FIELDS = ("max_tokens", "max_completion_tokens", "n", "seed", "top_logprobs")
_NUMBER_FIELDS = ("temperature", "top_p", "frequency_penalty", "presence_penalty")


@dataclass
class ChatRequest:
    body: dict  # what goes upstream (minus `model`, set per target)
    route_name: str
    requested_model: str
    stream: bool
    include_usage: bool
    metadata: dict = field(default_factory=dict)
    hints: RoutingHints = NO_HINTS
    # The client's body in another API's format, sent as it is to the targets that speak
    # that API (`/v1/messages` to Anthropic's: anthropic_native.py).
    native: dict | None = None


async def read_json_body(request: HttpRequest, *, limit: int | None = None) -> dict:
    """The request's JSON object, received up to `limit` bytes (413 past it)."""
    raw = await request_body.read(request, limit=limit)
    if not raw:
        raise errors.bad_request("The request body is empty; send a JSON object.")
    try:
        # On the event loop: orjson holds the GIL for the whole parse, so a worker thread
        # would not free the loop; GATEWAY_MAX_BODY_BYTES bounds it.
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise errors.bad_request(f"The request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise errors.bad_request("The request body must be a JSON object.")
    return body


def _check_sizes(messages: list) -> None:
    """Refuse requests far above normal use before looking at them closely: the checks
    below, the depth check and the token count each walk every part, and a request of a
    great many parts stalls the event loop, so every other request in the process.
    Counting costs one step per message, not per part."""
    limit = settings.GATEWAY_MAX_MESSAGES
    if len(messages) > limit:
        raise errors.bad_request(
            f"At most {limit} messages are allowed in one request; got {len(messages)}.",
            param="messages",
            code="too_many_messages",
        )
    parts = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            parts += len(content)
    limit = settings.GATEWAY_MAX_CONTENT_PARTS
    if parts > limit:
        raise errors.bad_request(
            f"At most {limit} content parts are allowed in one request; got {parts}.",
            param="messages",
            code="too_many_content_parts",
        )


def _check_messages(messages: object) -> None:
    if not isinstance(messages, list) or not messages:
        raise errors.bad_request(
            "'messages' must be a non-empty array of message objects.", param="messages"
        )
    _check_sizes(messages)
    for index, message in enumerate(messages):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise errors.bad_request(f"{param} must be an object.", param=param)
        role = message.get("role")
        if role not in ROLES:
            raise errors.bad_request(
                f"{param}.role must be one of {', '.join(sorted(ROLES))}; got {role!r}.",
                param=f"{param}.role",
            )
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise errors.bad_request(
                f"{param}.content must be a string or an array of content parts.",
                param=f"{param}.content",
            )
        if isinstance(content, list) and not all(isinstance(part, dict) for part in content):
            raise errors.bad_request(
                f"{param}.content parts must be objects.", param=f"{param}.content"
            )
        if content is None and role not in ("assistant", "function"):
            raise errors.bad_request(f"{param}.content is required.", param=f"{param}.content")
        if role == "tool" and not isinstance(message.get("tool_call_id"), str):
            raise errors.bad_request(
                f"{param}.tool_call_id is required on tool messages.",
                param=f"{param}.tool_call_id",
            )
        tool_calls = message.get("tool_calls")
        if tool_calls is not None:
            if not isinstance(tool_calls, list):
                raise errors.bad_request(
                    f"{param}.tool_calls must be an array.", param=f"{param}.tool_calls"
                )
            for call_index, call in enumerate(tool_calls):
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(
                    function.get("arguments", ""), str
                ):
                    raise errors.bad_request(
                        f"{param}.tool_calls[{call_index}].function.arguments must be a JSON string.",
                        param=f"{param}.tool_calls[{call_index}]",
                    )


def _check_types(body: dict) -> None:
    for name in _INT_FIELDS:
        value = body.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
            raise errors.bad_request(f"'{name}' must be an integer.", param=name)
        if name in ("max_tokens", "max_completion_tokens", "n") and value is not None and value < 1:
            raise errors.bad_request(f"'{name}' must be at least 1.", param=name)
    for name in _NUMBER_FIELDS:
        value = body.get(name)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise errors.bad_request(f"'{name}' must be a number.", param=name)
    if "stream" in body and not isinstance(body["stream"], bool | None):
        raise errors.bad_request("'stream' must be a boolean.", param="stream")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise errors.bad_request("'stream_options' must be an object.", param="stream_options")
    if "tools" in body and not isinstance(body["tools"], list | None):
        raise errors.bad_request("'tools' must be an array.", param="tools")


def parse_chat_request(
    body: dict, *, route_header: str | None, headers: Mapping[str, str] | None = None
) -> ChatRequest:
    chat = parse_route_fields(body, route_header=route_header, headers=headers)
    _check_messages(body.get("messages"))
    _check_types(body)
    chat.stream = bool(body.get("stream"))
    options = body.get("stream_options") or {}
    chat.include_usage = bool(chat.stream and options.get("include_usage"))
    return chat


def parse_route_fields(
    body: dict, *, route_header: str | None, headers: Mapping[str, str] | None = None
) -> ChatRequest:
    """What every endpoint's request has: the forbidden fields refused, the route named,
    the `x-gateway` hints taken out; the rest kept for pass-through (not streamed)."""
    forbidden = FORBIDDEN_FIELDS.intersection(body)
    if forbidden:
        name = sorted(forbidden)[0]
        raise errors.bad_request(
            f"'{name}' is not accepted: the gateway chooses the upstream and holds its credentials.",
            param=name,
        )
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise errors.bad_request("'model' must be a string.", param="model")
    route_name = (route_header or "").strip() or (model or "").strip()
    if not route_name:
        raise errors.bad_request(
            "'model' is required (or name a route in the x-route header).", param="model"
        )
    if len(route_name) > 200 or any(ch.isspace() or ord(ch) < 32 for ch in route_name):
        raise errors.bad_request(f"'{route_name[:50]}' is not a valid model name.", param="model")

    upstream = dict(body)
    extension = upstream.pop("x-gateway", None)
    alias = upstream.pop("x_gateway", None)
    if extension is None:
        extension = alias
    hints = parse_hints(extension={} if extension is None else extension, headers=headers or {})
    metadata: dict = {}
    if hints.tags is not None:
        metadata["tags"] = hints.tags
    if isinstance(body.get("user"), str):
        metadata["user"] = body["user"][:200]
    return ChatRequest(
        body=upstream,
        route_name=route_name,
        requested_model=model or "",
        stream=False,
        include_usage=False,
        metadata=metadata,
        hints=hints,
    )
