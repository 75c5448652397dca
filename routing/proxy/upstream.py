"""Calling upstream targets: order, circuit breakers, retries, fallback and deadlines.

`complete()` and `open_stream()` are what the handler calls; both go through
`try_targets()`, which walks the route's targets in the strategy's order (hints applied, open
circuits pushed to the back and skipped), retries each on retryable failures within the
retry budget, and falls back to the next. A connect error, timeout, 429 or 5xx before
the first byte reaches the client moves on; an upstream 4xx ends the walk (another target
would refuse the same request).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import httpx

from gateway_project.lib import errors
from gateway_project.lib.errors import GatewayError
from providers.aiohttp_transport import new_upstream_client
from providers.base import Target, UpstreamError, UpstreamStreamError
from providers.circuit import breaker as circuit_breaker
from providers.registry import provider_for
from routing.proxy import tracing
from routing.proxy.anthropic_native import complete_native, serves_natively, stream_native
from routing.proxy.exchange import Exchange, idle_wait_s, note_attempt
from routing.proxy.retries import MAX_DELAY, MAX_RETRY_WAIT, may_retry, retry_budget
from routing.proxy.strategies import latency_tracker, order_targets
from routing.snapshot import RouteEntry

T = TypeVar("T")
S = TypeVar("S")
_clients: dict[int, httpx.AsyncClient] = {}
# Upstream kinds that want the newer output-cap field when the gateway has to set one.
_COMPLETION_TOKENS_KINDS = frozenset({"openai", "azure_openai"})


def upstream_client() -> httpx.AsyncClient:
    """One pooled client per event loop: connections to providers are reused."""
    loop_id = id(asyncio.get_running_loop())
    client = _clients.get(loop_id)
    if client is None or client.is_closed:
        client = new_upstream_client()
        _clients[loop_id] = client
    return client


def upstream_body(exchange: Exchange, target: Target) -> dict:
    chat, snap = exchange.chat, exchange.snapshot
    assert chat is not None and snap is not None
    body = dict(chat.body)
    body["model"] = target.model
    body = snap.redaction.upstream_body(body)  # every string the client sent, not just messages
    guard = exchange.guard
    if guard is not None and guard.injected_cap is not None:
        field = "max_completion_tokens" if target.kind in _COMPLETION_TOKENS_KINDS else "max_tokens"
        body[field] = guard.injected_cap
    return body


def all_failed(exchange: Exchange, last: UpstreamError | None) -> GatewayError:
    if last is not None and not last.retryable:
        # The upstream (or the translation to its format) refused the request itself, a
        # 400 say: another target would refuse it too, and the client needs the reason.
        detail = (last.body or {}).get("error") if isinstance(last.body, dict) else None
        detail = detail if isinstance(detail, dict) else {}
        status = last.status if last.status and 400 <= last.status < 500 else 502
        return GatewayError(
            status,
            str(detail.get("message") or last.message),
            type="invalid_request_error",
            code=detail.get("code") or last.kind,
            param=detail.get("param"),
            outcome="upstream_error",
        )
    if exchange.attempts and all(a.get("kind") == "circuit_open" for a in exchange.attempts):
        return errors.upstream_failed(
            "Every upstream target of this route is failing (circuit open); try again shortly.",
            status=503,
            code="circuit_open",
        )
    tried = ", ".join(
        f"{a['provider']}/{a['model']}: {a.get('kind', 'error')}" for a in exchange.attempts
    )
    if exchange.attempts and all(a.get("kind") == "timeout" for a in exchange.attempts):
        return errors.upstream_failed(
            f"Every upstream target timed out ({tried}).", status=504, code="upstream_timeout"
        )
    return errors.upstream_failed(f"Every upstream target failed ({tried}).")


class _GaveUp(Exception):
    """A target failed for good (retries spent); `fatal` when no other target may help."""

    def __init__(self, error: UpstreamError, *, fatal: bool, tried: int = 1) -> None:
        super().__init__(error.message)
        self.error = error
        self.fatal = fatal
        self.tried = tried  # targets used up (2 after a hedged pair)


async def _attempt(
    exchange: Exchange, target: Target, start: Callable[[Target], Awaitable[T]], index: int
) -> T:
    """One target (the `index`-th in order), with its retries; raises _GaveUp when done
    with it."""
    retries = 0
    retry_budget.on_attempt(target.key)
    while True:
        started = time.perf_counter()
        try:
            with tracing.attempt(exchange, target, index=index, number=retries + 1):
                result = await start(target)
        except UpstreamError as exc:
            note_attempt(exchange, target, started, exc)
            await circuit_breaker.record(target, ok=False, kind=exc.kind)
            if exc.kind == "timeout":
                # A hanging target's average must rise, or latency routing keeps it first.
                latency_tracker.observe(target.key, time.perf_counter() - started)
            if not exc.retryable:
                raise _GaveUp(exc, fatal=True) from None
            delay = may_retry(target, exc, retries)
            if delay is None:
                raise _GaveUp(exc, fatal=False) from None
            retries += 1
            await asyncio.sleep(delay)
            if not await circuit_breaker.allow(target):
                raise _GaveUp(exc, fatal=False) from None  # that failure opened the circuit
            continue
        note_attempt(exchange, target, started, None)
        await circuit_breaker.record(target, ok=True)
        latency_tracker.observe(target.key, time.perf_counter() - started)
        return result


async def _hedged(
    exchange: Exchange,
    first: Target,
    second: Target,
    start: Callable[[Target], Awaitable[T]],
    delay: float,
    index: int,
) -> tuple[Target, T] | None:
    """Start `second` if `first` (the `index`-th target) has not answered after `delay`;
    keep whichever answers first and cancel the other. None when `first` finished (badly)
    before the delay, so the caller goes on as without hedging."""
    tasks = {asyncio.ensure_future(_attempt(exchange, first, start, index)): first}
    done, _ = await asyncio.wait(tasks, timeout=delay)
    if done:
        task = done.pop()
        try:
            return first, task.result()
        except _GaveUp as gave_up:
            if gave_up.fatal:
                raise
            return None
    if await circuit_breaker.allow(second):
        tasks[asyncio.ensure_future(_attempt(exchange, second, start, index + 1))] = second
        exchange.metadata["hedged"] = True
    last: _GaveUp | None = None
    pending = set(tasks)
    try:
        while pending:
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                if task.exception() is None:
                    return tasks[task], task.result()
                error = task.exception()
                if isinstance(error, _GaveUp):
                    last = error
                else:
                    raise error  # type: ignore[misc]  # not None: the task failed
    finally:
        for task in pending:
            task.cancel()
            loser = tasks[task]
            exchange.attempts.append(
                {
                    "provider": loser.provider_name,
                    "model": loser.model,
                    "ms": 0,
                    "ok": False,
                    "kind": "hedge_cancelled",
                }
            )
        await asyncio.gather(*pending, return_exceptions=True)
    assert last is not None
    raise _GaveUp(last.error, fatal=last.fatal, tried=len(tasks))


async def try_targets(exchange: Exchange, start: Callable[[Target], Awaitable[T]]) -> T:
    """Run `start` on each target in turn, with retries, until one succeeds.

    Targets come in the route strategy's order (hints applied); an open circuit is skipped
    without waiting, and after its cool-down exactly one request across all processes
    probes it. With `hedge_after_ms` on the route, the second target is started when the
    first has sent nothing after that long, and the faster answer wins.
    """
    route, chat = exchange.route, exchange.chat
    assert route is not None and chat is not None
    last: UpstreamError | None = None
    await circuit_breaker.refresh(route.targets)
    ordered = order_targets(
        route, hints=chat.hints, now=time.monotonic(), skip=circuit_breaker.is_open
    )
    index = 0
    while index < len(ordered):
        target = ordered[index]
        index += 1
        if not await circuit_breaker.allow(target):
            exchange.attempts.append(
                {
                    "provider": target.provider_name,
                    "model": target.model,
                    "ms": 0,
                    "ok": False,
                    "kind": "circuit_open",
                    "skipped": True,
                }
            )
            continue
        try:
            if route.hedge_after_ms is not None and index < len(ordered):
                outcome = await _hedged(
                    exchange, target, ordered[index], start, route.hedge_after_ms / 1000, index - 1
                )
                if outcome is None:
                    continue  # the first failed before the hedge delay: next in line
                target, result = outcome
            else:
                result = await _attempt(exchange, target, start, index - 1)
        except _GaveUp as gave_up:
            last = gave_up.error
            if gave_up.fatal:
                raise all_failed(exchange, last) from None
            index += gave_up.tried - 1
            continue
        exchange.target = target
        exchange.first_token_at = time.perf_counter()
        return result
    raise all_failed(exchange, last)


async def complete(exchange: Exchange) -> dict:
    """The whole answer (a chat.completion) of the first target that gives one."""
    client = upstream_client()

    async def start(target: Target) -> dict:
        if serves_natively(exchange, target):
            return await complete_native(exchange, target, client)
        return await provider_for(target.kind).complete(
            target, upstream_body(exchange, target), client
        )

    return await try_targets(exchange, start)


async def open_stream(exchange: Exchange) -> tuple[AsyncIterator[dict], dict]:
    """Try targets until one yields its first chunk; nothing has reached the client yet."""
    client = upstream_client()

    def make(target: Target) -> AsyncIterator[dict]:
        if serves_natively(exchange, target):
            return stream_native(exchange, target, client)
        return provider_for(target.kind).stream(target, upstream_body(exchange, target), client)

    return await open_stream_with(exchange, make)


async def open_stream_with(
    exchange: Exchange, make: Callable[[Target], AsyncIterator[S]]
) -> tuple[AsyncIterator[S], S]:
    """`open_stream()` for any stream of items: `make(target)` opens one target's stream
    (an async generator following the adapters' failure rules, providers/base.py)."""

    async def start(target: Target) -> tuple[AsyncIterator[S], S]:
        stream = make(target)
        wait = target.first_byte_timeout_s or target.timeout_s
        try:
            # asyncio.timeout, not wait_for: wait_for runs the read in a task of its own,
            # one more task and loop turn before the first token.
            async with asyncio.timeout(wait):
                first = await anext(stream)
        except TimeoutError:
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator
            raise UpstreamError(f"no first byte within {wait:g} s", kind="timeout") from None
        except (UpstreamError, asyncio.CancelledError):
            # Cancelled: a hedged twin answered first, or the client left.
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator
            raise
        except (UpstreamStreamError, StopAsyncIteration) as exc:
            # Broken before anything was forwarded: still safe to try the next target.
            await stream.aclose()  # type: ignore[attr-defined]  # an async generator
            raise UpstreamError(str(exc) or "empty stream", kind="bad_response") from None
        return stream, first

    return await try_targets(exchange, start)


def longest_wait_s(route: RouteEntry, *, stream: bool, timeout_hint_s: float | None) -> float:
    """The longest `try_targets` can take before a request is answered (or, for a stream,
    before its first chunk plus one idle interval): every target in turn, each attempt
    under its own deadline, every retry after its longest wait; the client's timeout hint
    bounds the walk. A budget reservation must outlive this, and need not outlive it long
    (see billing.admission.admit). A stream's reservation is extended while it runs
    (`idle_wait_s` at a time), since nothing bounds how long a live stream may last.
    """
    total = 0.0
    for target in route.targets:
        attempt = (target.first_byte_timeout_s or target.timeout_s) if stream else target.timeout_s
        total += (1 + target.max_retries) * attempt
        total += target.max_retries * max(MAX_RETRY_WAIT, MAX_DELAY)
    if timeout_hint_s is not None:
        total = min(total, timeout_hint_s)
    if stream:
        total += max((idle_wait_s(target) for target in route.targets), default=0.0)
    return total


@contextlib.asynccontextmanager
async def request_deadline(exchange: Exchange) -> AsyncIterator[None]:
    """The client's own `timeout` hint bounds every attempt together (504 when it passes)."""
    assert exchange.chat is not None
    limit = exchange.chat.hints.timeout_s
    if limit is None:
        yield
        return
    try:
        async with asyncio.timeout(limit):
            yield
    except TimeoutError:
        raise errors.upstream_failed(
            f"No answer within the requested {limit:g} s.", status=504, code="upstream_timeout"
        ) from None
