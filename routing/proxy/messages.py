"""Anthropic's Messages API: `POST /v1/messages` and `POST /v1/messages/count_tokens`.

`/v1/messages` is the chat pipeline (handler.py) in Anthropic's dialect: the request is
translated to the chat form (anthropic_request.py), runs every stage as a chat completion
does (auth, route, limits and budgets, cache, upstream with fallback, audit, ledger), and
the answer is rendered back (anthropic_answer.py, anthropic_stream.py). Any route target
serves it; an Anthropic target gets it back in its own format through providers/anthropic.

`count_tokens` is answered here, with the proxy's own counter (providers/tokens.py): no
upstream call, no admission (it costs nothing), one audit row like `/v1/models`'s.
"""

from __future__ import annotations

import logging

import orjson
from django.http import HttpRequest, HttpResponse
from django.http.response import HttpResponseBase

from gateway_project.lib import errors
from gateway_project.lib.errors import GatewayError
from providers.tokens import count_prompt_tokens, estimate_prompt_tokens, estimate_tokens
from routing.proxy import anthropic_answer, anthropic_native
from routing.proxy.anthropic_native import NativeFrames, serves_natively
from routing.proxy.anthropic_request import to_chat_body
from routing.proxy.anthropic_stream import MessageFrames
from routing.proxy.dialect import Dialect
from routing.proxy.exchange import Exchange
from routing.proxy.handler import handle_in_dialect, resolve_route
from routing.proxy.request import ChatRequest, parse_chat_request, read_json_body
from routing.snapshot import snapshots
from tenants.auth import authenticate
from tenants.policy import body_limit

logger = logging.getLogger(__name__)


def _parse(body: dict, request: HttpRequest) -> ChatRequest:
    chat = parse_chat_request(
        to_chat_body(body), route_header=request.headers.get("x-route"), headers=request.headers
    )
    chat.include_usage = chat.stream  # the frames read the usage chunk for message_delta
    chat.native = body  # what an Anthropic target gets (anthropic_native.py)
    return chat


def _render(result: dict) -> bytes:
    native = anthropic_native.render(result)
    return native if native is not None else anthropic_answer.render_message(result)


def _frames(exchange: Exchange) -> MessageFrames | NativeFrames:
    if exchange.target is not None and serves_natively(exchange, exchange.target):
        return NativeFrames()
    guard, chat = exchange.guard, exchange.chat
    counted = guard.prompt_tokens if guard is not None else 0
    if not counted and chat is not None:
        counted = estimate_prompt_tokens(chat.body.get("messages", []))
    return MessageFrames(input_tokens=counted)


MESSAGES = Dialect(
    endpoint="messages",
    parse=_parse,
    render=_render,
    error=anthropic_answer.error_response,
    frames=_frames,
)


async def handle_messages(request: HttpRequest) -> HttpResponseBase:
    return await handle_in_dialect(request, MESSAGES)


def _counted(chat: ChatRequest, kind: str) -> int:
    count = count_prompt_tokens(chat.body["messages"], kind)
    tools = chat.body.get("tools")
    if tools:
        count += estimate_tokens(orjson.dumps(tools).decode())
    return count


async def handle_count_tokens(request: HttpRequest) -> HttpResponse:
    """`{"input_tokens": N}` for a Messages request, counted for its route's first target."""
    exchange = Exchange(request=request, metadata={"endpoint": "messages.count_tokens"})
    try:
        exchange.snapshot = await snapshots.aget()
        exchange.caller = await authenticate(exchange.snapshot.tenancy, request)
        body = await read_json_body(request, limit=body_limit(exchange.caller.key.policy))
        # max_tokens is not part of a count: any value passes the translation's check.
        exchange.chat = _parse({**body, "max_tokens": 1, "stream": False}, request)
        exchange.route = resolve_route(exchange)
        count = _counted(exchange.chat, exchange.route.targets[0].kind)
    except GatewayError as exc:
        exchange.record(outcome=exc.outcome, status=exc.status, error=exc)
        return anthropic_answer.error_response(exc)
    except Exception:
        logger.exception("count_tokens failed")
        failure = errors.internal_error()
        exchange.record(outcome="error", status=500, error=failure)
        return anthropic_answer.error_response(failure)
    exchange.metadata["input_tokens"] = count
    exchange.record(outcome="success", status=200)
    return HttpResponse(orjson.dumps({"input_tokens": count}), content_type="application/json")
