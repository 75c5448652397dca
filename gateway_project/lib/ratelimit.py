"""Brute-force protection where passwords are tried: the admin login form and the DRF
management API (HTTP Basic).

Counters are django-ratelimit's, kept in the Django cache: Redis when REDIS_URL is set,
so every process and replica shares them, and the in-process cache otherwise, which is
right for the single process of the embedded setup. Windows are fixed, one per rate
period (django-ratelimit staggers their edges per key).

- Admin login: every POST counts, failed or not, per client address and per user name
  typed; over either rate the form is not even checked and a 429 page is shown.
- Management API: only requests that end unauthenticated or with failed credentials
  count, per client address. Once over the rate, every request from that address is
  answered 429 before its credentials are looked at, until the window ends: otherwise
  the one right guess would still get through and tell the attacker so. A staff user
  behind the same address waits too; the window is short.

Rates are read at request time, so tests and deployments can change them:
GATEWAY_ADMIN_LOGIN_RATE, GATEWAY_ADMIN_LOGIN_USERNAME_RATE and GATEWAY_API_AUTH_RATE,
in django-ratelimit's "count/period" form ("10/m", "100/h"). The client address is
REMOTE_ADDR unless RATELIMIT_IP_META_KEY says otherwise (set it behind a reverse proxy,
or every client shares the proxy's address).

If the cache cannot be reached (Redis down), counting falls back to this process's own
memory: the limits still hold, per process instead of across them, and the right
password still signs in. Refusing every login while Redis is away would lock the
operators out of the admin exactly when they need it. The local windows start empty, so
an outage gives an attacker at most one fresh window per process.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.admin import AdminSite
from django.core.cache.backends.locmem import LocMemCache
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.cache import add_never_cache_headers
from django_ratelimit import core as ratelimit_core
from django_ratelimit.core import (
    _SIMPLE_KEYS,
    EXPIRATION_FUDGE,
    _get_window,
    _make_cache_key,
    _split_rate,
    get_usage,
)
from rest_framework import exceptions
from rest_framework.request import Request

logger = logging.getLogger(__name__)

ADMIN_LOGIN_RATE = "10/m"
ADMIN_LOGIN_USERNAME_RATE = "20/m"
API_AUTH_RATE = "60/m"


@dataclass(frozen=True)
class Verdict:
    limited: bool
    retry_after: int = 0  # seconds until the window ends, when limited


def _rate(setting: str, default: str) -> Callable[[str, HttpRequest], str]:
    return lambda group, request: getattr(settings, setting, default)


def _username(group: str, request: HttpRequest) -> str:
    # Case and spaces do not make a new user name to guess for.
    return request.POST.get("username", "").strip().lower()


# Same name, same storage for every instance in this process; bounded like any locmem cache.
_local_counters = LocMemCache("gateway-ratelimit-fallback", {"OPTIONS": {"MAX_ENTRIES": 10_000}})


def _local_usage(
    request: HttpRequest, *, group: str, key: str | Callable[..., str], rate: Any, increment: bool
) -> dict[str, Any]:
    """django-ratelimit's fixed window (same key, same window edges), counted in memory."""
    rate = rate(group, request) if callable(rate) else rate
    limit, period = _split_rate(rate)
    value = key(group, request) if callable(key) else _SIMPLE_KEYS[key](request)
    window = _get_window(value, period)
    cache_key = _make_cache_key(group, window, rate, value, None)
    if not increment:
        count = _local_counters.get(cache_key, 0)
    elif _local_counters.add(cache_key, 1, period + EXPIRATION_FUDGE):
        count = 1
    else:
        try:
            count = _local_counters.incr(cache_key)
        except ValueError:  # expired between add() and incr()
            _local_counters.add(cache_key, 1, period + EXPIRATION_FUDGE)
            count = 1
    return {
        "count": count,
        "limit": limit,
        "should_limit": count > limit,
        "time_left": window - int(ratelimit_core.time.time()),  # django-ratelimit's clock
    }


def _count(
    request: HttpRequest, *, group: str, key: str | Callable[..., str], rate: Any, increment: bool
) -> Verdict:
    try:
        usage = get_usage(request, group=group, key=key, rate=rate, increment=increment)
    except ImproperlyConfigured:
        raise
    except Exception:  # the cache is unreachable (django-redis raises, it does not return)
        logger.warning("rate limit counter %s unavailable; counting in this process", group)
        usage = _local_usage(request, group=group, key=key, rate=rate, increment=increment)
    else:
        if usage is not None and usage["limit"] == 0 and usage["time_left"] < 0:
            # django-ratelimit's answer when the cache returned nothing (a client that
            # swallows errors); RATELIMIT_FAIL_OPEN makes it return None instead.
            logger.warning("rate limit counter %s unavailable; counting in this process", group)
            usage = _local_usage(request, group=group, key=key, rate=rate, increment=increment)
    if usage is None or not usage["should_limit"]:
        return Verdict(False)
    return Verdict(True, max(int(usage["time_left"]), 1))


# --- admin login -------------------------------------------------------------------------------


def admin_login_attempt(request: HttpRequest) -> Verdict:
    """Count one login POST against the address and the user name; both always count."""
    verdicts = [
        _count(
            request,
            group="admin-login:ip",
            key="ip",
            rate=_rate("GATEWAY_ADMIN_LOGIN_RATE", ADMIN_LOGIN_RATE),
            increment=True,
        ),
        _count(
            request,
            group="admin-login:username",
            key=_username,
            rate=_rate("GATEWAY_ADMIN_LOGIN_USERNAME_RATE", ADMIN_LOGIN_USERNAME_RATE),
            increment=True,
        ),
    ]
    limited = [verdict for verdict in verdicts if verdict.limited]
    if not limited:
        return Verdict(False)
    return Verdict(True, max(verdict.retry_after for verdict in limited))


def ratelimited_admin_login(site: AdminSite) -> Callable[..., HttpResponse]:
    """`site.login`, answering 429 (an admin page) to POSTs over the login rates."""

    @wraps(site.login)
    def login(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST":
            verdict = admin_login_attempt(request)
            if verdict.limited:
                logger.warning(
                    "admin login refused: too many attempts from %s",
                    request.META.get("REMOTE_ADDR"),
                )
                context = {
                    **site.each_context(request),
                    "title": "Too many sign-in attempts",
                    "retry_after": verdict.retry_after,
                }
                response = TemplateResponse(
                    request, "admin/login_ratelimited.html", context, status=429
                )
                response["Retry-After"] = str(verdict.retry_after)
                add_never_cache_headers(response)
                return response
        return site.login(request, *args, **kwargs)

    return login


# --- management API ----------------------------------------------------------------------------


class AuthRateLimited(exceptions.Throttled):
    """429 in the OpenAI envelope: type rate_limit_error, code rate_limit_exceeded. DRF's
    handler turns `wait` into the Retry-After header."""

    default_detail = "Too many failed authentication attempts from this address."
    default_code = "rate_limit_exceeded"
    extra_detail_singular = "Try again in {wait} second."
    extra_detail_plural = "Try again in {wait} seconds."


def _api_auth_failures(request: Request, *, increment: bool) -> Verdict:
    return _count(
        request,
        group="api-auth:ip",
        key="ip",
        rate=_rate("GATEWAY_API_AUTH_RATE", API_AUTH_RATE),
        increment=increment,
    )


class AuthFailureRateLimitMixin:
    """For DRF views: over GATEWAY_API_AUTH_RATE unauthenticated or failed-auth requests per
    address, answer 429 (see the module docstring). Put it before the view's base classes.
    """

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        verdict = _api_auth_failures(request, increment=False)
        if verdict.limited:
            raise AuthRateLimited(wait=verdict.retry_after)
        try:
            super().initial(request, *args, **kwargs)  # type: ignore[misc]  # APIView's, next in the MRO
        except (exceptions.NotAuthenticated, exceptions.AuthenticationFailed):
            verdict = _api_auth_failures(request, increment=True)
            if verdict.limited:
                raise AuthRateLimited(wait=verdict.retry_after) from None
            raise
