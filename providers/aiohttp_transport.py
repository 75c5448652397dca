"""The upstream HTTP client: httpx's API over aiohttp's connection pool.

The adapters speak httpx (`httpx.AsyncClient`, `httpx.Response`, httpx's exceptions), but
the default httpx transport (httpcore over anyio) was the single most expensive part of a
proxied request (`bench/http_clients.py` measures the three: httpx's own transport, the
client below and a bare aiohttp session; bench/README.md has the figures). Much of
httpcore's cost is per request and per pooled connection (every request polls every idle connection's socket
for expiry), so it also grows with the pool.

This transport hands each request to one `aiohttp.ClientSession` per event loop and maps
aiohttp's failures onto the httpx exceptions that `providers/calls.py` classifies, with
the same meaning httpx gives them:

| aiohttp                                        | httpx                 | our kind (before the first byte) |
|------------------------------------------------|-----------------------|----------------------------------|
| connection refused, DNS failure                | ConnectError          | connect_error                    |
| connect timeout (`sock_connect`, pool wait)    | ConnectTimeout        | timeout                          |
| no byte within the read timeout (`sock_read`)  | ReadTimeout           | timeout                          |
| connection reset while talking                 | ReadError             | connect_error                    |
| server hung up / body cut short / bad framing  | RemoteProtocolError   | bad_response                     |
"""

from __future__ import annotations

import asyncio
import functools
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import aiohttp
import httpx
import yarl

from gateway_project.lib.loops import close_with_loop

# Headers aiohttp computes itself from the URL and the body; passing httpx's copies too
# would send them twice.
_COMPUTED_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection"})
_EXTENSIONS = {"http_version": b"HTTP/1.1"}


@functools.lru_cache(maxsize=1024)
def _yarl_url(url: httpx.URL) -> yarl.URL:
    """aiohttp's parse of an upstream URL, kept: a gateway calls a handful of them over and
    over, and parsing one costs more than the rest of building the request."""
    return yarl.URL(str(url), encoded=True)


@contextmanager
def _as_httpx_errors(request: httpx.Request, *, reading: bool) -> Iterator[None]:
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except aiohttp.ServerTimeoutError as exc:  # sock_read: no byte for that long
        raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
    except aiohttp.ClientConnectorError as exc:
        raise httpx.ConnectError(str(exc), request=request) from exc
    except (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError) as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except aiohttp.ClientResponseError as exc:  # unparseable status line or headers
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except aiohttp.ClientOSError as exc:
        error = httpx.ReadError if reading else httpx.ConnectError
        raise error(str(exc), request=request) from exc
    except aiohttp.InvalidURL as exc:
        raise httpx.UnsupportedProtocol(str(exc), request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc


class _ResponseBody(httpx.AsyncByteStream):
    """An aiohttp response body as httpx's stream: each chunk as soon as it arrives."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _as_httpx_errors(self._request, reading=True):
            async for chunk in self._response.content.iter_any():
                yield chunk

    async def aclose(self) -> None:
        # A body read to the end returns the connection to the pool; one abandoned halfway
        # (the client hung up, a hedged twin won) closes it, so no stale bytes are reused.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One pooled aiohttp session per event loop (sessions cannot cross loops)."""

    def __init__(
        self, *, max_connections: int, trust_env: bool = True, keepalive_expiry_s: float = 30.0
    ) -> None:
        self._max_connections = max_connections
        self._trust_env = trust_env
        self._keepalive_expiry_s = keepalive_expiry_s
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        session = self._sessions.get(loop)
        if session is None or session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                keepalive_timeout=self._keepalive_expiry_s,
                ttl_dns_cache=300,
            )
            session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx.Response decodes by content-encoding
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=self._proxies_configured(),
            )
            self._sessions[loop] = session

            async def close() -> None:
                await session.close()
                if self._sessions.get(loop) is session:
                    del self._sessions[loop]

            close_with_loop(close)
        return session

    def _proxies_configured(self) -> bool:
        """Whether aiohttp should look for HTTP(S)_PROXY / NO_PROXY (and ~/.netrc).

        It looks on every request, which costs CPU on every request (bench/README.md):
        so only when the environment names a proxy at all, checked once per session.
        """
        return self._trust_env and bool(urllib.request.getproxies())

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The answer with its body as a stream, each chunk as soon as it arrives."""
        response = await self._send(request)
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_ResponseBody(response, request),
            request=request,
            extensions=_EXTENSIONS,
        )

    async def read_whole(self, request: httpx.Request) -> httpx.Response:
        """The answer with its whole body read (non-streamed calls): one read, no
        chunk-by-chunk stream for httpx to iterate."""
        response = await self._send(request)
        try:
            with _as_httpx_errors(request, reading=True):
                content = await response.read()
        finally:
            response.release()
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            content=content,
            request=request,
            extensions=_EXTENSIONS,
        )

    async def _send(self, request: httpx.Request) -> aiohttp.ClientResponse:
        timeout = request.extensions.get("timeout") or {}
        connect, pool = timeout.get("connect"), timeout.get("pool")
        headers = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in request.headers.raw
            if name.lower().decode("latin-1") not in _COMPUTED_HEADERS
        ]
        content = await request.aread()
        with _as_httpx_errors(request, reading=False):
            return await self._session().request(
                request.method,
                _yarl_url(request.url),
                headers=headers,
                data=content or None,
                allow_redirects=False,
                compress=None,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    # aiohttp's `connect` includes the wait for a free pooled connection.
                    connect=None if connect is None else connect + (pool or 0),
                    sock_connect=connect,
                    sock_read=timeout.get("read"),
                ),
            )

    async def aclose(self) -> None:
        sessions, self._sessions = self._sessions, {}
        for loop, session in sessions.items():
            if loop is asyncio.get_running_loop():
                await session.close()


class UpstreamClient(httpx.AsyncClient):
    """An httpx client whose `send` goes straight to the aiohttp transport.

    httpx's own `send` walks auth flows, redirects, cookie jars and event hooks, which the
    gateway's upstream calls never use (credentials are headers, redirects are not
    followed, providers set no cookies that matter), and that walk cost more than the
    transport did (bench/README.md). Proxies from the environment are honoured by the
    aiohttp session instead of httpx's proxy mounts.
    """

    def __init__(self, *, max_connections: int, trust_env: bool) -> None:
        self.upstream_transport = AiohttpTransport(
            max_connections=max_connections, trust_env=trust_env
        )
        super().__init__(
            transport=self.upstream_transport,
            timeout=httpx.Timeout(60.0, connect=5.0),
            trust_env=False,
            follow_redirects=False,
        )

    async def send(
        self, request: httpx.Request, *, stream: bool = False, **_: object
    ) -> httpx.Response:
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        if "timeout" not in request.extensions:
            request.extensions["timeout"] = self.timeout.as_dict()
        if stream:
            return await self.upstream_transport.handle_async_request(request)
        return await self.upstream_transport.read_whole(request)


def new_upstream_client(*, max_connections: int = 1000, trust_env: bool = True) -> UpstreamClient:
    """The client every adapter call goes through (one per event loop, see routing.proxy.upstream)."""
    return UpstreamClient(max_connections=max_connections, trust_env=trust_env)
