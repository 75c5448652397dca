"""HTTP plumbing shared by the adapters: timeouts, credentials and the failure taxonomy.

Every way an upstream call can fail ends up here as one `UpstreamError` whose `kind` and
`retryable` tell the proxy whether to move on to the next target:

| failure                                   | kind           | retryable |
|-------------------------------------------|----------------|-----------|
| connection refused / reset before a reply | connect_error  | yes       |
| any httpx timeout, our total deadline, 408| timeout        | yes       |
| 429                                       | rate_limited   | yes (retry_after set when the upstream said) |
| 5xx, 529 (Anthropic overloaded), 409      | server_error   | yes       |
| 401, 403, 404                             | upstream_error | yes: our credentials or model name are wrong, not the client's request |
| any other 4xx                             | client_error   | no: the client gets the upstream's message with the same status |
| 2xx with an unreadable or error body      | bad_response   | yes       |

`UpstreamError.body` is always an OpenAI error envelope (`{"error": {"message", "type",
"param", "code"}}`) for status failures, whatever the vendor's own shape was, so the
proxy can hand it to the client as it is.

Once a chunk has been yielded, failures are `UpstreamStreamError` instead, with kind
`connection_lost`, `timeout`, `malformed_chunk`, `upstream_error_event` or `truncated`
(the stream ended without its terminator).
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime

import httpx
import orjson

from gateway_project.lib import tracing
from providers.base import Target, UpstreamError, UpstreamStreamError

_CLIENT_ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
    }
)
_MAX_MESSAGE = 500
USER_AGENT = "llm-gateway/1"
# A bad base URL is as unreachable as a dead host; httpx.InvalidURL is not an HTTPError.
_UNREACHABLE = (httpx.NetworkError, httpx.UnsupportedProtocol, httpx.ProxyError, httpx.InvalidURL)
_TRANSPORT_ERRORS = (httpx.HTTPError, httpx.InvalidURL, TimeoutError)


def timeouts(target: Target) -> httpx.Timeout:
    """Connect within connect_timeout_s; then no read may stall past the stream-idle
    timeout (timeout_s when unset), no write past timeout_s. The first byte and the whole
    call have their own deadlines in the proxy."""
    return httpx.Timeout(
        connect=target.connect_timeout_s,
        read=target.stream_idle_timeout_s or target.timeout_s,
        write=target.timeout_s,
        pool=target.connect_timeout_s,
    )


def api_key(target: Target) -> str | None:
    """The secret named by the target, read from the environment (never stored anywhere)."""
    if not target.api_key_env:
        return None
    return os.environ.get(target.api_key_env) or None


def parse_retry_after(headers: httpx.Headers) -> float | None:
    """Seconds to wait, from `retry-after-ms`, or `retry-after` in seconds or as an HTTP date."""
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def error_envelope(content: bytes, status: int) -> dict:
    """The upstream's error body as an OpenAI envelope, translating Anthropic's shape."""
    try:
        parsed = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    default_type = "invalid_request_error" if 400 <= status < 500 else "api_error"
    param = code = None
    if isinstance(error, dict) and isinstance(parsed, dict) and parsed.get("type") != "error":
        # OpenAI's shape: keep the upstream's param and code, fill what a lax server left out.
        message = error.get("message")
        error_type = error.get("type") or default_type
        param, code = error.get("param"), error.get("code")
    elif isinstance(error, dict):  # Anthropic: {"type": "error", "error": {"type", "message"}}
        vendor_type = error.get("type")
        message = error.get("message") or vendor_type
        error_type = vendor_type if vendor_type in _CLIENT_ERROR_TYPES else default_type
    elif isinstance(error, str):
        message, error_type = error, default_type
    else:
        message = content[:_MAX_MESSAGE].decode("utf-8", "replace").strip()
        error_type = default_type
    return {
        "error": {
            "message": str(message) if message else f"Upstream answered HTTP {status}.",
            "type": error_type,
            "param": param,
            "code": code,
        }
    }


def status_error(status: int, headers: httpx.Headers, content: bytes) -> UpstreamError:
    body = error_envelope(content, status)
    message = f"upstream answered {status}: {body['error'].get('message')}"
    if status == 429:
        return UpstreamError(
            message,
            status=status,
            kind="rate_limited",
            body=body,
            retry_after=parse_retry_after(headers),
        )
    if status >= 500 or status == 409:
        return UpstreamError(message, status=status, kind="server_error", body=body)
    if status == 408:
        return UpstreamError(message, status=status, kind="timeout", body=body)
    if status in (401, 403, 404):
        return UpstreamError(message, status=status, kind="upstream_error", body=body)
    return UpstreamError(message, status=status, kind="client_error", retryable=False, body=body)


def transport_error(exc: Exception) -> UpstreamError:
    """A failure before the upstream answered anything usable."""
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return UpstreamError(f"upstream timed out ({type(exc).__name__})", kind="timeout")
    if isinstance(exc, _UNREACHABLE):
        return UpstreamError(f"cannot reach upstream: {exc!r}", kind="connect_error")
    return UpstreamError(f"upstream broke the exchange: {exc!r}", kind="bad_response")


def interrupted(exc: Exception, *, started: bool) -> Exception:
    """The error for a transport failure while reading a stream, before or after chunk one."""
    if not started:
        return transport_error(exc)
    if isinstance(exc, httpx.TimeoutException):
        return UpstreamStreamError(f"upstream stalled mid-stream: {exc!r}", kind="timeout")
    return UpstreamStreamError(f"upstream dropped the stream: {exc!r}", kind="connection_lost")


@functools.lru_cache(maxsize=1024)
def _parsed_url(url: str) -> httpx.URL:
    """httpx's parse of an upstream URL, kept: a gateway calls a handful of URLs over and
    over, and parsing one cost more than building the rest of the request."""
    return httpx.URL(url)


def upstream_request(
    target: Target, url: str, headers: dict[str, str], payload: dict
) -> httpx.Request:
    """The POST for one upstream call, built directly rather than by the client's
    `build_request` (no base URL, cookies or default headers to merge: see
    providers.aiohttp_transport.UpstreamClient). With tracing on, it carries the current
    attempt's W3C `traceparent`."""
    if tracing.ENABLED:  # the attempt's traceparent (routing/proxy/tracing.py)
        headers = tracing.with_trace_headers(headers)
    return httpx.Request(
        "POST",
        _parsed_url(url),
        content=orjson.dumps(payload),
        headers={"user-agent": USER_AGENT, **headers},
        extensions={"timeout": timeouts(target).as_dict()},
    )


async def post_json(
    client: httpx.AsyncClient, target: Target, url: str, headers: dict[str, str], payload: dict
) -> dict:
    """POST `payload` and return the decoded 2xx JSON object, or raise `UpstreamError`."""
    content = await post_bytes(client, target, url, headers, payload)
    try:
        data = orjson.loads(content)
    except orjson.JSONDecodeError as exc:
        raise UpstreamError("upstream answered invalid JSON", kind="bad_response") from exc
    if not isinstance(data, dict):
        raise UpstreamError("upstream answered JSON that is not an object", kind="bad_response")
    return data


async def post_bytes(
    client: httpx.AsyncClient, target: Target, url: str, headers: dict[str, str], payload: dict
) -> bytes:
    """POST `payload` and return the 2xx body as received, or raise `UpstreamError`."""
    try:
        # httpx timeouts bound each read, so a trickling upstream could hold us forever:
        # a non-streamed answer also gets timeout_s as a total deadline.
        async with asyncio.timeout(target.timeout_s):
            response = await client.send(upstream_request(target, url, headers, payload))
    except _TRANSPORT_ERRORS as exc:
        raise transport_error(exc) from exc
    if not 200 <= response.status_code < 300:
        raise status_error(response.status_code, response.headers, response.content)
    return response.content


@asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, target: Target, url: str, headers: dict[str, str], payload: dict
) -> AsyncIterator[httpx.Response]:
    """POST `payload` for a streamed answer; yields the 2xx response, closed on exit."""
    try:
        response = await client.send(upstream_request(target, url, headers, payload), stream=True)
    except _TRANSPORT_ERRORS as exc:
        raise transport_error(exc) from exc
    try:
        if not 200 <= response.status_code < 300:
            try:
                content = await response.aread()
            except httpx.HTTPError:
                content = b""
            raise status_error(response.status_code, response.headers, content)
        yield response
    finally:
        await response.aclose()
