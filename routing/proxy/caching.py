"""The cache stage: serve an answer from the response cache (routing.cache), or remember
that the request missed so its answer is stored once it has been given.

A hit makes no upstream call and costs nothing, but it was admitted like any request, so
it still counts against the rate limits; its reservation is settled at zero.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import TYPE_CHECKING

import orjson
from django.http import HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase

from billing.admission import settle
from gateway_project.lib import after_response
from routing import cache as response_cache
from routing.proxy.anthropic_native import NATIVE
from routing.proxy.exchange import Exchange, gateway_headers, usage_from
from routing.proxy.relay import completion_text, sse

if TYPE_CHECKING:
    from routing.proxy.dialect import Dialect

_background: set[asyncio.Future] = set()  # cache writes in flight (kept from the GC)


def _cacheable(exchange: Exchange) -> bool:
    """Cache only when the route opts in and the client neither bypasses the cache nor pins
    providers (an answer from another provider would not be what was asked for)."""
    route, chat = exchange.route, exchange.chat
    assert route is not None and chat is not None
    return response_cache.enabled(route) and chat.hints.cache and not chat.hints.affects_order


async def answer_from_cache(
    exchange: Exchange, dialect: Dialect | None = None
) -> HttpResponseBase | None:
    """The cached answer, when the route caches and has one; None to ask upstream (a miss
    is marked on the exchange, for `store_answer`). The cache holds chat completions;
    `dialect` (None: OpenAI's) renders a hit in the client's format."""
    if not _cacheable(exchange):
        return None
    route, caller, chat = exchange.route, exchange.caller, exchange.chat
    assert route is not None and caller is not None and chat is not None
    hit = await response_cache.lookup(route, caller.tenant.id, chat.body)
    if hit is not None:
        return await _serve_cached(exchange, hit, dialect)
    exchange.metadata["cache"] = "miss"
    return None


async def _serve_cached(
    exchange: Exchange, hit: response_cache.CachedAnswer, dialect: Dialect | None
) -> HttpResponseBase:
    """A cache hit: no upstream call, zero cost, still counted by the rate limits."""
    chat = exchange.chat
    assert chat is not None
    usage_from(exchange, hit.usage)
    exchange.first_token_at = time.perf_counter()
    exchange.metadata["cache"] = "semantic" if hit.semantic else "exact"
    if hit.similarity is not None:
        exchange.metadata["cache_similarity"] = round(hit.similarity, 4)
    exchange.response_text = completion_text(hit.completion)
    exchange.record(outcome="success", status=200)
    guard = exchange.guard
    if guard is not None:
        # Nothing was consumed upstream: release the reservation, correct TPM to zero.
        await after_response.defer(
            functools.partial(settle, guard.admission, tokens=0, cost=Decimal(0))
        )
    if chat.stream:
        chunks = response_cache.replay_chunks(hit.completion, include_usage=chat.include_usage)
        response: HttpResponseBase = StreamingHttpResponse(
            _replay(exchange, chunks, dialect), content_type="text/event-stream"
        )
        response["Cache-Control"] = "no-cache"
    elif dialect is not None:
        response = HttpResponse(dialect.render(hit.completion), content_type="application/json")
    elif NATIVE in hit.completion:
        # Stored by /v1/messages from an Anthropic target, with the upstream's own answer
        # beside it: a chat completion asking the same gets the completion alone.
        plain = {key: value for key, value in hit.completion.items() if key != NATIVE}
        response = HttpResponse(orjson.dumps(plain), content_type="application/json")
    else:
        response = HttpResponse(hit.body(), content_type="application/json")
    for name, value in {**gateway_headers(exchange), **hit.headers()}.items():
        response[name] = value
    return response


async def _replay(
    exchange: Exchange, chunks: list[dict], dialect: Dialect | None
) -> AsyncIterator[bytes]:
    if dialect is None or dialect.frames is None:
        for chunk in chunks:
            yield sse(chunk)
        yield b"data: [DONE]\n\n"
        return
    frames = dialect.frames(exchange)
    for chunk in chunks:
        data = frames.chunk(chunk)
        if data is not None:
            yield data
    yield frames.end()


def store_answer(exchange: Exchange, result: dict, response: HttpResponse) -> None:
    """After a miss: say so on the response, and write the answer to the cache without
    holding the response for it."""
    if exchange.metadata.get("cache") != "miss":
        return
    for name, value in response_cache.MISS_HEADERS.items():
        response[name] = value
    route, chat, caller = exchange.route, exchange.chat, exchange.caller
    assert route is not None and chat is not None and caller is not None
    task = asyncio.ensure_future(response_cache.store(route, caller.tenant.id, chat.body, result))
    _background.add(task)
    task.add_done_callback(_background.discard)
