"""A dialect: how one API's requests enter the chat pipeline and how its answers leave it.

The stages (handler.py) work on the internal OpenAI chat form; a dialect parses the
client's body into it and renders the answer, the stream and the errors back in the
client's own format. `CHAT` is OpenAI's (`/v1/chat/completions`), where both are the same;
`/v1/messages` has Anthropic's (messages.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
from django.http import HttpRequest, HttpResponse

from gateway_project.lib.errors import GatewayError
from routing.proxy.exchange import Exchange
from routing.proxy.relay import Frames
from routing.proxy.request import ChatRequest, parse_chat_request


@dataclass(frozen=True, slots=True)
class Dialect:
    endpoint: str | None  # the audit row's metadata "endpoint" (None: chat, unmarked)
    parse: Callable[[dict, HttpRequest], ChatRequest]
    render: Callable[[dict], bytes]  # a chat.completion, as the client's JSON answer
    error: Callable[[GatewayError], HttpResponse]
    frames: Callable[[Exchange], Frames] | None = None  # None: OpenAI's chunks, relayed


def _parse_chat(body: dict, request: HttpRequest) -> ChatRequest:
    return parse_chat_request(
        body, route_header=request.headers.get("x-route"), headers=request.headers
    )


CHAT = Dialect(endpoint=None, parse=_parse_chat, render=orjson.dumps, error=GatewayError.response)
