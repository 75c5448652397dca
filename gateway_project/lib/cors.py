"""CORS for browser clients of the proxy API (/v1/ only; never the admin, nor the
management API at /api/v1/, which a browser reaches only from the admin's own origin).

Off unless `GATEWAY_CORS_ALLOWED_ORIGINS` lists origins (`https://app.example.com`, comma
separated) or is `*`. Then:
- a preflight (`OPTIONS` with `Access-Control-Request-Method`) on any /v1/ path is
  answered here, 204, before authentication (browsers send no credentials with it): the
  methods, the headers the SDKs send (`ALLOWED_HEADERS`, and any `x-stainless-*`,
  `openai-*`, `anthropic-*` or `x-gateway-*` one asked for) and `Access-Control-Max-Age`;
  to an origin not listed it answers 204 with no CORS header, which the browser refuses;
- every other answer to a listed origin carries `Access-Control-Allow-Origin` and
  `Access-Control-Expose-Headers` (the request id, the gateway's headers, the rate-limit
  and retry headers), errors included.
Credentials are never allowed (no `Access-Control-Allow-Credentials`): keys travel in the
`Authorization` or `x-api-key` header, which a page sets itself, never in cookies. That
is what makes `*` safe to offer.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase

PROXY_PREFIX = "/v1/"
ALLOWED_METHODS = "GET, POST, OPTIONS"
ALLOWED_HEADERS = (
    "authorization",
    "x-api-key",
    "content-type",
    "accept",
    "anthropic-version",
    "anthropic-beta",
    "anthropic-dangerous-direct-browser-access",
    "openai-organization",
    "openai-project",
    "openai-beta",
    "idempotency-key",
    "x-route",
    "x-request-id",
    "x-tenant-id",
    "x-gateway",
    "x-stainless-arch",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-retry-count",
    "x-stainless-timeout",
)
ALLOWED_HEADER_PREFIXES = ("x-stainless-", "openai-", "anthropic-", "x-gateway-")
EXPOSED_HEADERS = ", ".join(
    (
        "x-request-id",
        "x-gateway-route",
        "x-gateway-provider",
        "x-gateway-model",
        "x-gateway-attempts",
        "x-gateway-fallback",
        "x-gateway-cache",
        "x-gateway-config-version",
        "x-gateway-max-tokens",
        "retry-after",
        "retry-after-ms",
        "x-should-retry",
        "x-ratelimit-limit-requests",
        "x-ratelimit-limit-tokens",
        "x-ratelimit-remaining-requests",
        "x-ratelimit-remaining-tokens",
        "x-ratelimit-reset-requests",
        "x-ratelimit-reset-tokens",
    )
)


def allowed_origin(origin: str, allowed: list[str]) -> str | None:
    """What `Access-Control-Allow-Origin` says to `origin`, None if it is not allowed."""
    if "*" in allowed:
        return "*"
    return origin if origin.rstrip("/").lower() in allowed else None


def allowed_headers(requested: str) -> str:
    wanted = [h.strip().lower() for h in requested.split(",") if h.strip()]
    extra = [
        h for h in wanted if h.startswith(ALLOWED_HEADER_PREFIXES) and h not in ALLOWED_HEADERS
    ]
    return ", ".join((*ALLOWED_HEADERS, *extra))


class ProxyCorsMiddleware:
    async_capable = True
    sync_capable = True

    def __init__(self, get_response: Callable) -> None:
        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> HttpResponseBase | Awaitable[HttpResponseBase]:
        if self.is_async:
            return self._acall(request)
        origin = self._origin(request)
        if origin is None:
            return self.get_response(request)
        if _is_preflight(request):
            return _preflight(request, origin)
        return _with_origin(self.get_response(request), origin)

    async def _acall(self, request: HttpRequest) -> HttpResponseBase:
        origin = self._origin(request)
        if origin is None:
            return await self.get_response(request)
        if _is_preflight(request):
            return _preflight(request, origin)
        return _with_origin(await self.get_response(request), origin)

    @staticmethod
    def _origin(request: HttpRequest) -> str | None:
        """The request's Origin when CORS applies to it (on, a proxy path, an Origin)."""
        if not settings.GATEWAY_CORS_ALLOWED_ORIGINS or not request.path.startswith(PROXY_PREFIX):
            return None
        return request.headers.get("origin")


def _is_preflight(request: HttpRequest) -> bool:
    return request.method == "OPTIONS" and "access-control-request-method" in request.headers


def _preflight(request: HttpRequest, origin: str) -> HttpResponse:
    response = HttpResponse(status=204)
    response["Vary"] = "Origin"
    allow = allowed_origin(origin, settings.GATEWAY_CORS_ALLOWED_ORIGINS)
    if allow is None:
        return response
    response["Access-Control-Allow-Origin"] = allow
    response["Access-Control-Allow-Methods"] = ALLOWED_METHODS
    requested = request.headers.get("access-control-request-headers", "")
    response["Access-Control-Allow-Headers"] = allowed_headers(requested)
    response["Access-Control-Max-Age"] = str(settings.GATEWAY_CORS_MAX_AGE_SECONDS)
    return response


def _with_origin(response: HttpResponseBase, origin: str) -> HttpResponseBase:
    allow = allowed_origin(origin, settings.GATEWAY_CORS_ALLOWED_ORIGINS)
    if allow is not None:
        response["Access-Control-Allow-Origin"] = allow
        response["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    if allow != "*":
        response["Vary"] = "Origin"
    return response
